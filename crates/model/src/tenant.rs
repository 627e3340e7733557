use std::fmt;
use std::sync::Arc;

/// Longest tenant id accepted, as in Mimir and Loki.
const MAX_TENANT_ID_LEN: usize = 150;

/// A validated tenant id. Every storage key, cache key and limit starts with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is too long: max {MAX_TENANT_ID_LEN} characters, got {0}")]
    TooLong(usize),
    #[error(
        "tenant id {id:?} contains unsupported character {ch:?} (allowed: letters, digits and !-_.*'())"
    )]
    BadCharacter { id: String, ch: char },
    #[error("tenant id {0:?} is not allowed: it is a relative path segment")]
    PathSegment(String),
}

impl TenantId {
    /// The tenant used when multi-tenancy is off or no header is sent (Mimir's default).
    pub const ANONYMOUS: &'static str = "anonymous";

    /// Validates a tenant id the way Mimir (dskit) does: at most 150
    /// characters from `[a-zA-Z0-9!-_.*'()]`, and not `.` or `..`.
    pub fn new(id: &str) -> Result<Self, TenantError> {
        if id.is_empty() {
            return Err(TenantError::Empty);
        }
        if id.len() > MAX_TENANT_ID_LEN {
            return Err(TenantError::TooLong(id.len()));
        }
        if let Some(ch) = id.chars().find(|c| !is_allowed(*c)) {
            return Err(TenantError::BadCharacter {
                id: id.to_string(),
                ch,
            });
        }
        if id == "." || id == ".." {
            return Err(TenantError::PathSegment(id.to_string()));
        }
        Ok(TenantId(id.into()))
    }

    pub fn anonymous() -> Self {
        TenantId(Self::ANONYMOUS.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_mimir() {
        assert!(TenantId::new("team-a_1.prod").is_ok());
        assert!(TenantId::new("a(b)*'!").is_ok());
        assert_eq!(TenantId::new(""), Err(TenantError::Empty));
        assert!(matches!(
            TenantId::new("a/b"),
            Err(TenantError::BadCharacter { .. })
        ));
        assert!(matches!(
            TenantId::new("a|b"),
            Err(TenantError::BadCharacter { .. })
        ));
        assert!(matches!(
            TenantId::new(".."),
            Err(TenantError::PathSegment(_))
        ));
        assert!(matches!(
            TenantId::new(&"x".repeat(151)),
            Err(TenantError::TooLong(151))
        ));
        assert!(TenantId::new(&"x".repeat(150)).is_ok());
    }
}
