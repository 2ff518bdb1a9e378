//! The keys that verify Mercure tokens: the hub's HS256 secrets, and the key files of
//! trusted issuers (PEM public keys or HS256 secrets). A key's type decides which algorithms
//! it verifies.

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::ApiError;

/// A key that verifies tokens, and the algorithms it verifies: the key's type decides
/// them, never the token's header.
#[derive(Clone)]
pub struct VerifyingKey {
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey {{ algorithms: {:?} }}", self.algorithms)
    }
}

impl VerifyingKey {
    /// The refusal of a token signed with an algorithm this key is not for.
    pub(super) fn wrong_algorithm(&self) -> ApiError {
        let names: Vec<String> = self.algorithms.iter().map(|a| format!("{a:?}")).collect();
        ApiError::invalid_token(format!(
            "the JWT must be signed with {}",
            names.join(" or ")
        ))
    }

    /// An HS256 secret.
    pub fn secret(secret: &[u8]) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256],
        }
    }

    /// A key file's contents: a PEM public key (RSA: RS256, RS384, RS512, PS256, PS384,
    /// PS512; EC: ES256, ES384; Ed25519: EdDSA), else an HS256 secret (surrounding
    /// whitespace trimmed) of at least 32 bytes.
    ///
    /// # Errors
    ///
    /// A PEM block that is no public key of those types; a short secret.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, String> {
        let text = bytes.trim_ascii();
        // A public key in another format must not become a secret that anyone can read:
        // a JWK or JWK set, an OpenSSH public key, a DER structure.
        let public = [
            &b"{"[..],
            b"[",
            b"ssh-",
            b"ecdsa-sha2-",
            b"\x30\x82",
            b"\x30\x81",
        ]
        .iter()
        .any(|start| text.starts_with(start));
        if public {
            return Err(
                "looks like a public key that is not PEM (JWK, OpenSSH or DER): give it as a \
                 PEM public key"
                    .into(),
            );
        }
        if !text.starts_with(b"-----BEGIN") {
            if text.len() < crate::config::MIN_KEY_LEN {
                return Err(format!(
                    "an HS256 secret needs at least {} bytes",
                    crate::config::MIN_KEY_LEN
                ));
            }
            return Ok(Self::secret(text));
        }
        use Algorithm::*;
        if let Ok(key) = DecodingKey::from_rsa_pem(text) {
            return Ok(Self {
                key,
                algorithms: vec![RS256, RS384, RS512, PS256, PS384, PS512],
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(text) {
            return Ok(Self {
                key,
                algorithms: vec![ES256, ES384],
            });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(text) {
            return Ok(Self {
                key,
                algorithms: vec![EdDSA],
            });
        }
        Err("not a PEM public key (RSA, EC or Ed25519)".into())
    }
}
