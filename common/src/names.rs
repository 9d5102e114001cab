//! Validation of every name that crosses a trust boundary (config files, gRPC messages) and may
//! end up in a repository path, an object key, a SQL identifier or a log line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn err(what: &'static str, value: &str, why: &'static str) -> NameError {
    // Never echo back something enormous.
    let mut value = value.to_owned();
    if value.len() > 80 {
        let mut cut = 80;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    NameError { what, value, why }
}

/// A simple name: agent, environment, target, repository, operator. Lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter or digit, 1 to 63 characters. Safe as a path
/// segment, an object key segment, a metric label value and a URI path segment.
pub fn validate_simple(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(what, value, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(err(what, value, "must be at most 63 characters"));
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(err(
            what,
            value,
            "must start with a lowercase letter or a digit",
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            what,
            value,
            "may contain only lowercase letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

/// Implements the string-like traits of a validated name type: `Display`, `FromStr`,
/// `TryFrom<String>`/`TryFrom<&str>`, `AsRef<str>`, and serde as the plain string (checked
/// again on the way in).
macro_rules! name_type {
    ($ty:ident, $parse:path) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $parse(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $parse(&s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use name_type;

/// A string newtype checked by `$check(what, value)` when it is made: `parse`, `as_str`, and
/// the traits of [`name_type!`].
macro_rules! checked_string {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                $check($what, s)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        name_type!($ty, $ty::parse);

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}
pub(crate) use checked_string;

checked_string!(
    /// An environment name (`prod`), validated as a simple name.
    EnvName,
    "environment",
    validate_simple
);
checked_string!(
    /// An agent name (`prod-1`), validated as a simple name.
    AgentName,
    "agent name",
    validate_simple
);

/// A full target name `ENV/NAME`: the environment and the target's own name, each a simple
/// name. Only [`TargetName::new`] and [`TargetName::parse`] make one, so a value of this type
/// is always valid; `env()` and `name()` are its two parts, `Display` is `ENV/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetName {
    full: String,
    slash: usize,
}

impl TargetName {
    pub fn new(environment: &str, name: &str) -> Result<Self, NameError> {
        validate_simple("environment", environment)?;
        validate_simple("target name", name)?;
        Ok(Self {
            full: format!("{environment}/{name}"),
            slash: environment.len(),
        })
    }

    pub fn parse(full: &str) -> Result<Self, NameError> {
        let Some((env, name)) = full.split_once('/') else {
            return Err(err("target", full, "must be ENV/NAME, e.g. prod/orders"));
        };
        Self::new(env, name)
    }

    /// The environment part (`prod` of `prod/orders`).
    pub fn env(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The target's own name (`orders` of `prod/orders`): what an agent's config calls it.
    pub fn name(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// `ENV/NAME`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}
name_type!(TargetName, TargetName::parse);

/// A PostgreSQL or MySQL database name that lifeboat creates or restores into. Stricter than
/// the servers allow, so it can be used unquoted-safe in messages and quoted in SQL.
pub fn validate_database(value: &str) -> Result<(), NameError> {
    const WHAT: &str = "database name";
    if value.is_empty() {
        return Err(err(WHAT, value, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(err(WHAT, value, "must be at most 63 bytes"));
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(err(WHAT, value, "must start with a letter or '_'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(err(
            WHAT,
            value,
            "may contain only ASCII letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_names() {
        for ok in ["prod", "prod-1", "a", "orders_v2", "0day"] {
            validate_simple("x", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "Prod",
            "../etc",
            "a/b",
            "-x",
            "_x",
            "a b",
            "ünicode",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(validate_simple("x", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn target_names() {
        let t = TargetName::parse("prod/orders").expect("valid");
        assert_eq!(t.env(), "prod");
        assert_eq!(t.name(), "orders");
        assert_eq!(t.to_string(), "prod/orders");
        assert_eq!(t, TargetName::new("prod", "orders").expect("valid"));
        assert_eq!("prod/orders".parse::<TargetName>(), Ok(t.clone()));
        let json = serde_json::to_string(&t).expect("json");
        assert_eq!(json, "\"prod/orders\"");
        assert_eq!(serde_json::from_str::<TargetName>(&json).expect("back"), t);
        assert!(serde_json::from_str::<TargetName>("\"prod/../x\"").is_err());
        for bad in [
            "prod",
            "prod/",
            "/orders",
            "prod/orders/x",
            "../x",
            "prod/../x",
        ] {
            assert!(TargetName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn environment_and_agent_names() {
        assert_eq!(EnvName::parse("prod").expect("valid").as_str(), "prod");
        assert!("Prod".parse::<EnvName>().is_err());
        assert_eq!(
            AgentName::try_from("prod-1").expect("valid").to_string(),
            "prod-1"
        );
        assert!(AgentName::try_from("prod/1".to_owned()).is_err());
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let e = validate_simple("x", &"A".repeat(10_000)).expect_err("invalid");
        assert!(e.to_string().len() < 200);
    }

    #[test]
    fn database_names() {
        for ok in ["orders", "orders_restore_20261127", "_x", "Orders-2"] {
            validate_database(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "1abc", "a;drop", "a\"b", "a b", &"x".repeat(64)] {
            assert!(validate_database(bad).is_err(), "{bad:?} accepted");
        }
    }
}
