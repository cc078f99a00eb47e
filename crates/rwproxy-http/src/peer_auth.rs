//! Signed `/status` answers between peers (peer-aware health with `cluster.secret`): the asking
//! node sends a fresh random nonce, the answering node signs nonce and body with an HMAC keyed
//! by the shared secret. A node that does not hold the secret cannot pass for a peer, an old
//! answer cannot be replayed, and the secret itself never crosses the network.

use http::HeaderName;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The asking node's nonce (hex).
pub static PEER_NONCE: HeaderName = HeaderName::from_static("rwproxy-peer-nonce");
/// The answering node's signature (hex HMAC-SHA256 of nonce, newline, body).
pub static PEER_PROOF: HeaderName = HeaderName::from_static("rwproxy-peer-proof");

/// Longest nonce a node signs: a real one is 32 hex digits; anything longer is not a peer's.
pub const MAX_NONCE_LEN: usize = 64;

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn message(nonce: &[u8], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(nonce.len() + 1 + body.len());
    message.extend_from_slice(nonce);
    message.push(b'\n');
    message.extend_from_slice(body);
    message
}

/// A fresh nonce: 16 random bytes as hex; `None` if the system's random source fails.
pub fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

/// The proof for `body` answering `nonce`.
pub fn sign(secret: &[u8], nonce: &[u8], body: &[u8]) -> String {
    hex(hmac::sign(&key(secret), &message(nonce, body)).as_ref())
}

/// True when `proof` is the right one for `body` answering `nonce` (compared in constant time).
pub fn verify(secret: &[u8], nonce: &[u8], body: &[u8], proof: &str) -> bool {
    let Some(tag) = unhex(proof) else {
        return false;
    };
    hmac::verify(&key(secret), &message(nonce, body), &tag).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [_, _] => u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_answer_verifies_only_with_its_secret_nonce_and_body() {
        let secret = b"0123456789abcdef";
        let nonce = nonce().unwrap();
        assert_eq!(nonce.len(), 32);
        let proof = sign(secret, nonce.as_bytes(), b"{}");
        assert!(verify(secret, nonce.as_bytes(), b"{}", &proof));
        assert!(!verify(
            b"another secret!!",
            nonce.as_bytes(),
            b"{}",
            &proof
        ));
        assert!(!verify(secret, b"another nonce", b"{}", &proof));
        assert!(!verify(secret, nonce.as_bytes(), b"{\"x\":1}", &proof));
        assert!(!verify(secret, nonce.as_bytes(), b"{}", "zz"));
        assert!(!verify(secret, nonce.as_bytes(), b"{}", ""));
    }
}
