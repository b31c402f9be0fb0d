//! The test OpenID provider: node oidc-provider (tests/oidc/op.mjs) on a free port.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::Proc;

/// tests/oidc, with its node modules installed (`npm ci`) if they are missing.
pub fn oidc_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if !dir.join("node_modules/oidc-provider").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .expect("npm ci for tests/oidc");
        assert!(st.success(), "npm ci --prefix tests/oidc failed");
    }
    dir
}

/// How to start the test OpenID provider: `OpBuilder::new(redirect_uris)`, options, then
/// `start()`.
pub struct OpBuilder {
    cmd: Command,
}

impl OpBuilder {
    /// The provider on port 0 (it picks a free one) accepting the `redirect_uris`
    /// (space-separated).
    pub fn new(redirect_uris: &str) -> OpBuilder {
        let dir = oidc_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("op.mjs"))
            .current_dir(&dir)
            .env("PORT", "0")
            .env("REDIRECT_URIS", redirect_uris);
        OpBuilder { cmd }
    }

    /// `POST_LOGOUT_REDIRECT_URIS`.
    pub fn post_logout(mut self, uris: &str) -> OpBuilder {
        self.cmd.env("POST_LOGOUT_REDIRECT_URIS", uris);
        self
    }

    /// Consent is given without a form (`AUTO_CONSENT=1`).
    pub fn auto_consent(mut self) -> OpBuilder {
        self.cmd.env("AUTO_CONSENT", "1");
        self
    }

    /// Serves HTTPS with this certificate and key (`TLS_CERT`, `TLS_KEY`).
    pub fn tls(mut self, cert: &Path, key: &Path) -> OpBuilder {
        self.cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
        self
    }

    /// Any other environment variable op.mjs reads.
    pub fn env(mut self, key: &str, value: &str) -> OpBuilder {
        self.cmd.env(key, value);
        self
    }

    /// Starts it and waits for its `READY <issuer>` line; returns the process and the issuer.
    pub fn start(self) -> (Proc, String) {
        Proc::spawn("oidc-provider", self.cmd, Some("READY "))
    }
}
