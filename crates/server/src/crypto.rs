//! Short-lived state carried in authenticated tokens instead of database rows (Ory Hydra's
//! lesson: 4–5× fewer database interactions): browser sessions are HMAC-signed, authorization
//! codes are AES-256-GCM sealed. Both keys live in the database so every instance shares them.
//! Single use of codes is still enforced in the database (`used_codes`).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

const SESSION_PREFIX: &str = "cys_";
const CODE_PREFIX: &str = "cyc_";
const CODE_AAD: &[u8] = b"consentry authorization code v1";

/// Random bytes, base64url: for refresh tokens, ids, secrets.
pub fn random_token(bytes: usize) -> String {
    random_token_from(&SystemRandom::new(), bytes)
}

/// [`random_token`] from `rng` (the system generator; another one in tests).
///
/// If the generator fails, the process stops (abort) rather than hand out a predictable value:
/// every caller (refresh tokens, grant and client ids, registration secrets, the session and
/// code secrets made at first start) would otherwise issue something anyone could guess, and
/// a generator that fails means the OS has no entropy to give, which no request can work around.
fn random_token_from(rng: &dyn Fill, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if rng.fill_bytes(&mut buf).is_err() {
        tracing::error!(
            "the system random number generator failed: stopping rather than issue a predictable token or secret"
        );
        // The log writes to stderr synchronously: the line is out before the process stops.
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// A source of random bytes: [`SystemRandom`], or in tests one that fails. (aws-lc-rs seals
/// its `SecureRandom` trait: only its `dev-tests-only` feature lets a crate implement it, and
/// that feature refuses to build in release, which `cargo xtask bench` does with this crate's
/// dev-dependencies.)
trait Fill {
    fn fill_bytes(&self, dest: &mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified>;
}

impl<T: SecureRandom> Fill for T {
    fn fill_bytes(&self, dest: &mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified> {
        self.fill(dest)
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}

/// S256: the code_challenge of a code_verifier, BASE64URL(SHA256(verifier)).
pub fn pkce_s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// S256: BASE64URL(SHA256(code_verifier)) == code_challenge, compared in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = pkce_s256_challenge(verifier);
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// What a browser session token asserts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionClaims {
    /// user id
    pub u: String,
    /// token profile id
    pub p: String,
    /// expires at
    pub e: i64,
    /// issued at
    pub i: i64,
    /// The user's attributes as attested (so the consent API needs no database read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r: Vec<String>,
    /// The organization the user is a member of in this session (`default` when the token
    /// profile maps none; sessions sealed before organizations carry none and mean `default`).
    #[serde(default = "default_org", skip_serializing_if = "is_default_org")]
    pub o: String,
    /// Its display name, as attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

fn default_org() -> String {
    consentry_protocol::policy::DEFAULT_ORGANIZATION.to_owned()
}

fn is_default_org(o: &str) -> bool {
    o == consentry_protocol::policy::DEFAULT_ORGANIZATION
}

pub enum SessionError {
    Invalid,
    Expired,
}

pub struct Sealer {
    session_key: hmac::Key,
    code_key: LessSafeKey,
}

impl Sealer {
    /// Keys from 32-byte secrets (base64url).
    pub fn new(session_secret: &str, code_secret: &str) -> anyhow::Result<Sealer> {
        let s = URL_SAFE_NO_PAD.decode(session_secret)?;
        let c = URL_SAFE_NO_PAD.decode(code_secret)?;
        let code_key = UnboundKey::new(&AES_256_GCM, &c)
            .map_err(|_| anyhow::anyhow!("code sealing secret must be 32 bytes"))?;
        Ok(Sealer {
            session_key: hmac::Key::new(hmac::HMAC_SHA256, &s),
            code_key: LessSafeKey::new(code_key),
        })
    }

    pub fn session_token(&self, claims: &SessionClaims) -> anyhow::Result<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let tag = hmac::sign(&self.session_key, payload.as_bytes());
        Ok(format!(
            "{SESSION_PREFIX}{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    pub fn open_session(&self, token: &str, now: i64) -> Result<SessionClaims, SessionError> {
        let body = token
            .strip_prefix(SESSION_PREFIX)
            .ok_or(SessionError::Invalid)?;
        let (payload, tag) = body.split_once('.').ok_or(SessionError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SessionError::Invalid)?;
        hmac::verify(&self.session_key, payload.as_bytes(), &tag)
            .map_err(|_| SessionError::Invalid)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SessionError::Invalid)?;
        let claims: SessionClaims =
            serde_json::from_slice(&bytes).map_err(|_| SessionError::Invalid)?;
        if claims.e <= now {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }

    pub fn seal<T: Serialize>(&self, value: &T) -> anyhow::Result<String> {
        let mut data = serde_json::to_vec(value)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
        self.code_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(CODE_AAD),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// `None` for anything not sealed by this server (tampered, truncated, foreign).
    pub fn open<T: DeserializeOwned>(&self, sealed: &str) -> Option<T> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(CODE_PREFIX)?)
            .ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self
            .code_key
            .open_in_place(nonce, Aad::from(CODE_AAD), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&random_token(32), &random_token(32)).expect("keys")
    }

    #[test]
    fn session_roundtrip_and_tamper() {
        let s = sealer();
        let c = SessionClaims {
            u: "u1".into(),
            p: "default".into(),
            e: 200,
            i: 100,
            m: None,
            n: None,
            r: Vec::new(),
            o: "acme".into(),
            on: None,
        };
        let t = s.session_token(&c).expect("sign");
        assert!(matches!(s.open_session(&t, 150), Ok(c) if c.u == "u1" && c.o == "acme"));
        assert!(matches!(
            s.open_session(&t, 200),
            Err(SessionError::Expired)
        ));
        let mut tampered = t.clone();
        tampered.insert(6, 'A');
        assert!(matches!(
            s.open_session(&tampered, 150),
            Err(SessionError::Invalid)
        ));
        assert!(matches!(
            sealer().open_session(&t, 150),
            Err(SessionError::Invalid)
        ));
    }

    #[test]
    fn sealed_code_rejects_tampering() {
        let s = sealer();
        let code = s.seal(&vec!["a".to_string()]).expect("seal");
        assert_eq!(s.open::<Vec<String>>(&code), Some(vec!["a".to_string()]));
        let mut bytes = code.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("utf8");
        assert_eq!(s.open::<Vec<String>>(&tampered), None);
    }

    /// A generator that writes `byte` into part of the buffer, then fails (as an OS call
    /// failing midway could).
    struct Failing {
        byte: u8,
    }

    impl Fill for Failing {
        fn fill_bytes(&self, dest: &mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified> {
            let half = dest.len() / 2;
            dest[..half].fill(self.byte);
            Err(aws_lc_rs::error::Unspecified)
        }
    }

    const CHILD_ENV: &str = "CONSENTRY_TEST_FAILING_RNG_CHILD";

    /// Run inside the child process of the test below: make a token from a failing generator
    /// and print it. It must never get to print.
    #[test]
    fn failing_rng_child() {
        let Ok(byte) = std::env::var(CHILD_ENV) else {
            return;
        };
        let byte: u8 = byte.parse().expect("byte");
        let token = random_token_from(&Failing { byte }, 32);
        println!("TOKEN={token}");
    }

    /// When the random generator fails, no token comes out (neither all zeros nor a partly
    /// filled one): the process stops. Run in a child process, since it aborts.
    #[test]
    fn a_failing_random_generator_stops_the_process_and_yields_no_token() {
        // In a directory of its own: a core dump, where the system makes them, lands there.
        let dir = tempfile::tempdir().expect("tempdir");
        for byte in [0u8, 0x41] {
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .current_dir(dir.path())
                .args([
                    "--exact",
                    "crypto::tests::failing_rng_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, byte.to_string())
                .output()
                .expect("run the child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !stdout.contains("TOKEN="),
                "a token came out of a failing generator: {stdout}"
            );
            assert!(
                !out.status.success(),
                "the child should have stopped: {stdout}"
            );
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(out.status.signal(), Some(6), "expected SIGABRT: {out:?}");
            }
        }
        // The real generator still works: different tokens of the right length, never zeros.
        let (a, b) = (random_token(32), random_token(32));
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(URL_SAFE_NO_PAD.decode(&a).expect("base64"), vec![0u8; 32]);
    }

    #[test]
    fn pkce_s256_rfc7636_appendix_b() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
