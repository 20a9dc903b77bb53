//! Where the store lives, as given by `--store`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A store's place: a SQLite file, nowhere, or a PostgreSQL server.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file, opened in WAL mode and locked for this process.
    Sqlite(PathBuf),
    /// An in-memory database that is gone when the server stops.
    Memory,
    /// A PostgreSQL database, by its `postgres://` URL (or `postgresql://`).
    Postgres(String),
}

impl Location {
    /// The default: `natter.db` in the working directory.
    pub fn default_file() -> Location {
        Location::Sqlite(PathBuf::from("natter.db"))
    }

    /// Whether several servers can share this store (a cluster needs one that can).
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// Why a `--store` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLocation(String);

impl fmt::Display for BadLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store must be sqlite:PATH, memory or postgres://USER:PASS@HOST/DB, not {}",
            self.0
        )
    }
}

impl std::error::Error for BadLocation {}

impl FromStr for Location {
    type Err = BadLocation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            return Ok(Location::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            // `sqlite://PATH` is how some tools spell it; both mean the file PATH.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BadLocation(s.into()));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            if s.parse::<postgres::Config>().is_err() {
                return Err(BadLocation(redact(s)));
            }
            return Ok(Location::Postgres(s.into()));
        }
        Err(BadLocation(redact(s)))
    }
}

/// The URL with any password replaced, fit for logs and errors.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_pass, host)) => match user_pass.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.into(),
        },
        None => url.into(),
    }
}

/// Shows the location as it is given, with a PostgreSQL password hidden.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Memory => f.write_str("memory"),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!("memory".parse(), Ok(Location::Memory));
        assert_eq!(
            "sqlite:natter.db".parse(),
            Ok(Location::Sqlite("natter.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/natter/n.db".parse(),
            Ok(Location::Sqlite("/var/lib/natter/n.db".into()))
        );
        let pg: Location = "postgres://natter:secret@db.example/natter"
            .parse()
            .unwrap();
        assert!(pg.is_shared());
        for bad in [
            "",
            "sqlite:",
            "mysql://x/y",
            "natter.db",
            "postgres://a:b@h/d?nope=1",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let pg: Location = "postgres://natter:secret@db.example:5433/natter"
            .parse()
            .unwrap();
        assert_eq!(
            pg.to_string(),
            "postgres://natter:***@db.example:5433/natter"
        );
        assert!(!format!("{pg:?}").contains("secret"));
        let err = "postgres://natter:secret@h/d?nope=1"
            .parse::<Location>()
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(redact("postgres://natter@h/d"), "postgres://natter@h/d");
    }
}
