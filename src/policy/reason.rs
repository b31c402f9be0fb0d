//! Reason strings (spec 1.5) as an enum, and a non-allocating set of them.

use std::fmt;

macro_rules! reasons {
    ($($variant:ident => $text:literal,)*) => {
        /// One reason string from spec 1.5. Variants are in alphabetical order of their text,
        /// so iterating a [`Reasons`] set yields sorted strings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason, in bit order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The spec's string for this reason.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }

            /// Parses a spec reason string.
            pub fn from_name(text: &str) -> Option<Reason> {
                match text {
                    $($text => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    Accept => "accept",
    ClaimOk => "claim-ok",
    ClaimUnauthorized => "claim-unauthorized",
    ClientCertificateOk => "client-certificate-ok",
    ClientCertificateRequired => "client-certificate-required",
    ClientCertificateUnauthorized => "client-certificate-unauthorized",
    CorsRequest => "cors-request",
    DeviceOk => "device-ok",
    DeviceUnauthenticated => "device-unauthenticated",
    DeviceUnauthorized => "device-unauthorized",
    DomainOk => "domain-ok",
    DomainUnauthorized => "domain-unauthorized",
    EmailOk => "email-ok",
    EmailUnauthorized => "email-unauthorized",
    GroupsOk => "groups-ok",
    GroupsUnauthorized => "groups-unauthorized",
    HttpMethodOk => "http-method-ok",
    HttpMethodUnauthorized => "http-method-unauthorized",
    HttpPathOk => "http-path-ok",
    HttpPathUnauthorized => "http-path-unauthorized",
    InvalidClientCertificate => "invalid-client-certificate",
    NonCorsRequest => "non-cors-request",
    NonPomeriumRoute => "non-pomerium-route",
    PomeriumRoute => "pomerium-route",
    Reject => "reject",
    RouteNotFound => "route-not-found",
    SourceIpOk => "source-ip-ok",
    SourceIpUnauthorized => "source-ip-unauthorized",
    UserOk => "user-ok",
    UserUnauthenticated => "user-unauthenticated",
    UserUnauthorized => "user-unauthorized",
    ValidClientCertificate => "valid-client-certificate",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Reason`]s stored as a bitset: copying, merging and testing never allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reasons(u64);

impl Reasons {
    /// The empty set.
    pub const EMPTY: Reasons = Reasons(0);

    /// A set holding exactly `reason`.
    pub const fn one(reason: Reason) -> Reasons {
        Reasons(1u64 << reason as u8)
    }

    /// True if `reason` is in the set.
    pub const fn contains(self, reason: Reason) -> bool {
        self.0 & (1u64 << reason as u8) != 0
    }

    /// True if the two sets share a reason.
    pub const fn intersects(self, other: Reasons) -> bool {
        self.0 & other.0 != 0
    }

    /// Set union.
    pub const fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    /// Adds one reason.
    pub fn insert(&mut self, reason: Reason) {
        self.0 |= 1u64 << reason as u8;
    }

    /// True if the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of reasons in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The reasons in alphabetical order of their strings.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL
            .iter()
            .copied()
            .filter(move |r| self.contains(*r))
    }

    /// The reasons as the spec's strings, sorted.
    pub fn to_strings(self) -> Vec<&'static str> {
        self.iter().map(Reason::as_str).collect()
    }
}

impl std::ops::BitOr for Reasons {
    type Output = Reasons;
    fn bitor(self, rhs: Reasons) -> Reasons {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for Reasons {
    fn bitor_assign(&mut self, rhs: Reasons) {
        self.0 |= rhs.0;
    }
}

impl From<Reason> for Reasons {
    fn from(reason: Reason) -> Reasons {
        Reasons::one(reason)
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Reasons {
        let mut set = Reasons::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Reason::as_str))
            .finish()
    }
}

impl fmt::Display for Reasons {
    /// `[a, b]`, sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(r.as_str())?;
        }
        f.write_str("]")
    }
}

impl serde::Serialize for Reasons {
    /// A sorted list of the spec's strings.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Reason::as_str))
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_sorted_and_round_trip() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "enum order must be alphabetical");
        assert_eq!(names.len(), 32);
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::from_name("nope"), None);
    }

    #[test]
    fn set_operations() {
        let a = Reasons::one(Reason::EmailOk) | Reasons::one(Reason::Accept);
        assert!(a.contains(Reason::Accept));
        assert!(!a.contains(Reason::Reject));
        assert_eq!(a.len(), 2);
        assert_eq!(a.to_strings(), vec!["accept", "email-ok"]);
        assert_eq!(a.to_string(), "[accept, email-ok]");
        assert!(a.intersects(Reason::EmailOk.into()));
        assert!(Reasons::EMPTY.is_empty());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"["accept","email-ok"]"#
        );
    }
}
