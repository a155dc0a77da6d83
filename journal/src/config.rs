//! The TOML configuration file shared by `foxing-journal record`, `foxing-shipper serve` and
//! `foxing-applier` (`--config FILE`): one section per program, every key optional, keys named
//! like the command-line options (with `_` for `-`). A command-line option wins over the file.
//! Unknown sections and keys are errors, so a typo never passes silently. See
//! docs/foxing.example.toml for an annotated example.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub recorder: RecorderConfig,
    #[serde(default)]
    pub shipper: ShipperConfig,
    #[serde(default)]
    pub applier: ApplierConfig,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderConfig {
    pub root: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub fsync_window_ms: Option<u64>,
    pub payload_cap_bytes: Option<u32>,
    pub ring_size_bytes: Option<u32>,
    pub segment_size_bytes: Option<u64>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipperConfig {
    pub journal: Option<PathBuf>,
    pub listen: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub max_bytes_per_sec: Option<u64>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplierConfig {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub connect: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub name: Option<String>,
    pub server_name: Option<String>,
    pub follow: Option<bool>,
    pub archive_only: Option<bool>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

impl Config {
    /// Parses a configuration from TOML text (pure).
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Loads `path`, or an empty configuration when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../docs/foxing.example.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.recorder.root.as_deref(), Some(Path::new("/srv/data")));
        assert_eq!(c.shipper.listen.as_deref(), Some("0.0.0.0:7878"));
        assert_eq!(c.applier.follow, Some(true));
    }

    #[test]
    fn typos_are_errors() {
        let e = Config::parse("[recorder]\nrot = \"/x\"\n").unwrap_err();
        assert!(e.to_string().contains("rot"), "{e}");
        assert!(Config::parse("[recorderr]\n").is_err());
        assert!(Config::parse("").is_ok());
    }
}

/// `p` made absolute with symlinks resolved as far as it exists (the rest appended as given):
/// for paths that may not have been created yet.
pub fn resolved_path(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |acc, n| acc.join(n));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// Whether one of the two directories is, or lies inside, the other (after resolving
/// symlinks): a journal or state directory inside a watched or replica root would be recorded
/// or replaced as part of the tree.
pub fn nested_dirs(a: &Path, b: &Path) -> bool {
    let (a, b) = (resolved_path(a), resolved_path(b));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    #[test]
    fn nested_dirs_sees_through_symlinks_and_missing_tails() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&root, d.path().join("alias")).unwrap();
        assert!(nested_dirs(&root, &d.path().join("alias/j/not/yet")));
        assert!(nested_dirs(&root.join("x"), &root));
        assert!(nested_dirs(&root, &root));
        assert!(!nested_dirs(&root, &d.path().join("rootx")));
        assert!(!nested_dirs(&root, &d.path().join("journal")));
    }
}
