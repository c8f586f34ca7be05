//! Dataplane tokens: what a proxy presents on its ADS stream to prove which Dataplane it is
//! (as Kuma's dataplane tokens do).
//!
//! A token is `<payload>.<signature>`, both base64url without padding: the payload is JSON
//! `{"v":1,"kid","jti","mesh","name","iat","exp"}` (seconds since the epoch) and the signature
//! HMAC-SHA256 over the encoded payload with the signing key `kid`. Signing keys are 32 random
//! bytes kept in the store (so every control-plane instance sharing it verifies the same
//! tokens); a new key can be added (it signs from then on, the others still verify) and an old
//! one removed (its tokens stop working). Single tokens are revoked by their `jti`.
//!
//! Verification failures are typed ([`TokenError`]) and never carry the token.

use std::collections::BTreeSet;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// One signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// Its id (in each token's `kid`).
    pub id: String,
    /// The secret, hex.
    secret: String,
    /// When it was created (seconds since the epoch).
    pub created: u64,
}

/// What the store keeps: the signing keys (the last one signs) and the revoked token ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    /// Signing keys, oldest first; the last one signs new tokens.
    pub keys: Vec<SigningKey>,
    /// Revoked token ids.
    pub revoked: BTreeSet<String>,
}

/// The claims of a valid token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Format version (1).
    pub v: u8,
    /// Id of the key that signed it.
    pub kid: String,
    /// Id of the token (for revocation).
    pub jti: String,
    /// Mesh of the Dataplane.
    pub mesh: String,
    /// Name of the Dataplane.
    pub name: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `<payload>.<signature>` in base64url, or the payload is not the claims.
    #[error("the dataplane token is malformed")]
    Malformed,
    /// Signed with a key that does not exist (any more).
    #[error("the dataplane token was signed with an unknown or removed signing key")]
    UnknownKey,
    /// The signature does not match.
    #[error("the dataplane token's signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("the dataplane token expired")]
    Expired,
    /// Revoked.
    #[error("the dataplane token was revoked")]
    Revoked,
    /// No signing key exists yet.
    #[error("no signing key: the control plane has not been set up to issue tokens")]
    NoKey,
}

/// Issues and verifies dataplane tokens from a [`TokenState`].
#[derive(Debug, Default)]
pub struct TokenAuthority {
    state: RwLock<TokenState>,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // SystemRandom only fails when the OS has no randomness, which the TLS stack needs too
    if SystemRandom::new().fill(&mut b).is_err() {
        tracing::error!("the operating system gave no random bytes");
    }
    hex::encode(b)
}

impl TokenAuthority {
    /// An authority over `state`.
    pub fn new(state: TokenState) -> Self {
        Self {
            state: RwLock::new(state),
        }
    }

    /// The current state (to store it).
    pub fn state(&self) -> TokenState {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the state (loaded from the store).
    pub fn replace(&self, state: TokenState) {
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// A state with one new signing key added (it signs from now on); `now` in seconds.
    pub fn with_new_key(state: &TokenState, now: u64) -> TokenState {
        let mut s = state.clone();
        s.keys.push(SigningKey {
            id: random_hex(8),
            secret: random_hex(32),
            created: now,
        });
        s
    }

    /// Issues a token for Dataplane `mesh`/`name`, valid for `valid_for_secs` from `now`.
    pub fn issue(&self, mesh: &str, name: &str, now: u64, valid_for_secs: u64) -> Result<(String, Claims), TokenError> {
        let st = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = st.keys.last().ok_or(TokenError::NoKey)?;
        let claims = Claims {
            v: 1,
            kid: key.id.clone(),
            jti: random_hex(12),
            mesh: mesh.to_string(),
            name: name.to_string(),
            iat: now,
            exp: now.saturating_add(valid_for_secs),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed)?);
        let sig = hmac::sign(&hmac_key(key)?, payload.as_bytes());
        Ok((format!("{payload}.{}", B64.encode(sig.as_ref())), claims))
    }

    /// Verifies `token` at `now` (seconds); returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let st = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = st
            .keys
            .iter()
            .find(|k| k.id == claims.kid)
            .ok_or(TokenError::UnknownKey)?;
        hmac::verify(&hmac_key(key)?, payload.as_bytes(), &sig).map_err(|_| TokenError::BadSignature)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if st.revoked.contains(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// The claims of `token` if its signature is valid, whatever its expiry (to revoke it).
    pub fn decode_signed(&self, token: &str) -> Result<Claims, TokenError> {
        // at time 0 nothing has expired yet
        match self.verify(token, 0) {
            Ok(c) => Ok(c),
            Err(TokenError::Revoked) => {
                let payload = token.split_once('.').map(|p| p.0).unwrap_or_default();
                B64.decode(payload)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or(TokenError::Malformed)
            }
            Err(e) => Err(e),
        }
    }
}

fn hmac_key(key: &SigningKey) -> Result<hmac::Key, TokenError> {
    let secret = hex::decode(&key.secret).map_err(|_| TokenError::UnknownKey)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(TokenAuthority::with_new_key(&TokenState::default(), 1000))
    }

    #[test]
    fn issue_verify_expire_revoke_rotate() {
        let a = authority();
        let (t, c) = a.issue("default", "web-01", 1000, 3600).unwrap();
        assert_eq!(a.verify(&t, 1001).unwrap(), c);
        assert_eq!(a.verify(&t, 4600), Err(TokenError::Expired));
        // tampering with the claims breaks the signature
        let (payload, sig) = t.split_once('.').unwrap();
        let mut claims: Claims = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        claims.name = "db-01".into();
        let forged = format!("{}.{sig}", B64.encode(serde_json::to_vec(&claims).unwrap()));
        assert_eq!(a.verify(&forged, 1001), Err(TokenError::BadSignature));
        assert_eq!(a.verify("garbage", 1001), Err(TokenError::Malformed));
        assert_eq!(a.verify("a.b", 1001), Err(TokenError::Malformed));
        // another control plane's key is unknown here
        let (other, _) = authority().issue("default", "web-01", 1000, 3600).unwrap();
        assert_eq!(a.verify(&other, 1001), Err(TokenError::UnknownKey));
        // revocation by id
        let mut st = a.state();
        st.revoked.insert(c.jti.clone());
        a.replace(st);
        assert_eq!(a.verify(&t, 1001), Err(TokenError::Revoked));
        assert_eq!(a.decode_signed(&t).unwrap().jti, c.jti);
        // rotation: a new key signs, the old one still verifies until removed
        let (t1, _) = a.issue("default", "api-01", 1000, 3600).unwrap();
        a.replace(TokenAuthority::with_new_key(&a.state(), 2000));
        let (t2, c2) = a.issue("default", "api-01", 2000, 3600).unwrap();
        assert_ne!(c2.kid, a.state().keys[0].id);
        assert!(a.verify(&t1, 2001).is_ok() && a.verify(&t2, 2001).is_ok());
        let mut st = a.state();
        st.keys.remove(0);
        a.replace(st);
        assert_eq!(a.verify(&t1, 2001), Err(TokenError::UnknownKey));
        assert!(a.verify(&t2, 2001).is_ok());
        assert_eq!(
            TokenAuthority::default().issue("m", "n", 0, 1).unwrap_err(),
            TokenError::NoKey
        );
    }

    #[test]
    fn errors_never_show_the_token() {
        let a = authority();
        let (t, _) = a.issue("default", "web-01", 1000, 1).unwrap();
        for e in [a.verify(&t, 5000).unwrap_err(), a.verify("x.y", 0).unwrap_err()] {
            assert!(!e.to_string().contains(&t[..10]), "{e}");
        }
    }
}
