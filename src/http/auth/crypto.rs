//! Small crypto helpers shared by the sign-in pieces: base64 flavours, HMAC, the
//! XChaCha20-Poly1305 envelope Pomerium uses (ciphertext followed by the 24-byte nonce), random
//! tokens.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Sha256, Sha512_256};

/// A 32-byte secret (shared_secret or cookie_secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

const NONCE_LEN: usize = 24;

pub fn b64url_padded(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64 in any of the usual flavours (standard/url-safe, padded or not).
pub fn b64_decode_any(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    STANDARD
        .decode(t)
        .or_else(|_| URL_SAFE.decode(t))
        .or_else(|_| URL_SAFE_NO_PAD.decode(t))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .ok()
}

pub fn hmac_sha512_256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha512_256> as Mac>::new_from_slice(key).expect("hmac takes any key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time comparison.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// XChaCha20-Poly1305 seal: `ciphertext || nonce` (Pomerium's `cryptutil.Encrypt` layout).
pub fn seal(key: &Secret32, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let nonce_bytes = random_bytes::<NONCE_LEN>();
    let nonce = XNonce::from_slice(&nonce_bytes);
    let mut out = cipher
        .encrypt(
            nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("xchacha20poly1305 encryption cannot fail for in-memory buffers");
    out.extend_from_slice(&nonce_bytes);
    out
}

/// Opens a `seal`ed blob; `None` when it is too short or fails authentication.
pub fn open(key: &Secret32, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (ct, nonce) = sealed.split_at(sealed.len() - NONCE_LEN);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper() {
        let key = Secret32([7; 32]);
        let sealed = seal(&key, b"hello", b"aad");
        assert_eq!(open(&key, &sealed, b"aad").unwrap(), b"hello");
        assert!(open(&key, &sealed, b"other").is_none());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(open(&key, &bad, b"aad").is_none());
        assert!(open(&Secret32([8; 32]), &sealed, b"aad").is_none());
        assert!(open(&key, b"short", b"aad").is_none());
    }

    #[test]
    fn decodes_base64_flavours() {
        assert_eq!(b64_decode_any("aGk=").unwrap(), b"hi");
        assert_eq!(b64_decode_any("aGk").unwrap(), b"hi");
        assert_eq!(b64_decode_any("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert!(b64_decode_any("***").is_none());
    }
}
