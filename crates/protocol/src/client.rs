//! The closed vocabularies of client metadata (RFC 7591 §2, OpenID Connect Registration) and of
//! the server's registration setting, as types.
//!
//! Each is parsed once where it enters (a registration body, a metadata document, the config):
//! an unknown value is refused there with an error naming the allowed values, and nothing past
//! that point compares these as strings.

use core::fmt;
use core::str::FromStr;

/// A value outside one of the vocabularies below; `Display` names the value and what is allowed
/// ("'password' is not supported; expected authorization_code, refresh_token or
/// client_credentials"). The field is the caller's to name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// The value received.
    pub value: String,
    /// The values the vocabulary has.
    pub allowed: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // At most 100 characters of what was sent: it is echoed into error descriptions.
        let shown = match self.value.char_indices().nth(100) {
            Some((i, _)) => &self.value[..i],
            None => self.value.as_str(),
        };
        let ellipsis = if shown.len() < self.value.len() {
            "..."
        } else {
            ""
        };
        write!(f, "'{shown}{ellipsis}' is not supported; expected ")?;
        for (i, name) in self.allowed.iter().enumerate() {
            let sep = match i {
                0 => "",
                i if i + 1 == self.allowed.len() => " or ",
                _ => ", ",
            };
            write!(f, "{sep}{name}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownValue {}

macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order error messages list them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// The wire spelling of every value, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            /// Exact, case-sensitive: these are registered protocol values.
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        value: s.to_owned(),
                        allowed: $name::NAMES,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary! {
    /// An OAuth grant type this server implements (`grant_types`).
    GrantType {
        /// The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636).
        AuthorizationCode = "authorization_code",
        /// Refresh tokens, rotated on use (RFC 6749 §6).
        RefreshToken = "refresh_token",
        /// A confidential client acting for itself (RFC 6749 §4.4).
        ClientCredentials = "client_credentials",
    }
}

vocabulary! {
    /// How a client authenticates at the token endpoint (`token_endpoint_auth_method`).
    ClientAuthMethod {
        /// A public client: client_id only, PKCE proves possession.
        None = "none",
        /// The secret in HTTP Basic (RFC 6749 §2.3.1).
        ClientSecretBasic = "client_secret_basic",
        /// The secret in the form body.
        ClientSecretPost = "client_secret_post",
    }
}

vocabulary! {
    /// OpenID Connect Registration's `application_type`: which redirect URIs a client may use.
    ApplicationType {
        /// https, or http on a loopback host.
        Web = "web",
        /// RFC 8252: loopback http, a private-use scheme or a claimed https URI.
        Native = "native",
    }
}

vocabulary! {
    /// `[registration] mode`: who may use Dynamic Client Registration.
    RegistrationMode {
        /// Anyone.
        Open = "open",
        /// Whoever presents one of the configured initial access tokens.
        InitialAccessToken = "initial_access_token",
        /// Nobody.
        Disabled = "disabled",
    }
}

impl ClientAuthMethod {
    /// A method with a shared secret.
    pub fn is_confidential(self) -> bool {
        self != ClientAuthMethod::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_spelling_and_serde() {
        fn check<T>(all: &[T])
        where
            T: Copy + PartialEq + fmt::Debug + FromStr<Err = UnknownValue> + fmt::Display,
            T: serde::Serialize + for<'de> serde::Deserialize<'de>,
        {
            for v in all {
                let text = v.to_string();
                assert_eq!(text.parse::<T>().unwrap(), *v);
                let json = serde_json::to_string(v).unwrap();
                assert_eq!(json, format!("\"{text}\""));
                assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
            }
        }
        check(GrantType::ALL);
        check(ClientAuthMethod::ALL);
        check(ApplicationType::ALL);
        check(RegistrationMode::ALL);
    }

    #[test]
    fn unknown_values_name_the_allowed_ones() {
        let e = "password".parse::<GrantType>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'password' is not supported; expected authorization_code, refresh_token or client_credentials"
        );
        let e = "ios".parse::<ApplicationType>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'ios' is not supported; expected web or native"
        );
        let e = "Open".parse::<RegistrationMode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'Open' is not supported; expected open, initial_access_token or disabled"
        );
        let e = serde_json::from_str::<ClientAuthMethod>("\"private_key_jwt\"").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "'private_key_jwt' is not supported; expected none, client_secret_basic or client_secret_post"
            ),
            "{e}"
        );
        assert!(serde_json::from_str::<GrantType>("5").is_err());
        let long = "x".repeat(500);
        let shown = long.parse::<GrantType>().unwrap_err().to_string();
        assert!(shown.len() < 200, "{shown}");
    }

    #[test]
    fn only_none_is_public() {
        assert!(!ClientAuthMethod::None.is_confidential());
        assert!(ClientAuthMethod::ClientSecretBasic.is_confidential());
        assert!(ClientAuthMethod::ClientSecretPost.is_confidential());
    }
}
