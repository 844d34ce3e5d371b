//! The rules a token and its name follow, shared by hiltd (which checks
//! `[[server.token]]`) and `hilt token new` (which writes that block), so
//! a block the CLI prints is always one the daemon accepts.

use sha2::{Digest, Sha256};

/// What a token's name may be, for messages.
pub const NAME_RULE: &str = "1 to 64 ASCII letters, digits, '_', '-', '.' or '@'";

/// Whether `name` follows [`NAME_RULE`]: names go into log lines and
/// the audit trail as they are.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// The SHA-256 a config holds in place of `token`.
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(is_valid_name("alice@lab-2.x_y"));
        for bad in ["", "a b", "ünï", &"a".repeat(65), "a\"b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
