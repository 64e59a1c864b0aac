use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (passphrase, token): zeroized on drop, never printed.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }
    /// The only way to read the secret; call sites are easy to audit.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl From<String> for Secret {
    fn from(mut value: String) -> Secret {
        let secret = Secret::new(value.clone());
        value.zeroize();
        secret
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2-correct-horse".into());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2-correct-horse");
    }
}
