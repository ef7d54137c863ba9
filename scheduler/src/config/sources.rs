//! Where settings come from: `-Dkey=value`, `MESOFLOW_*` environment variables and a YAML file,
//! each read into `(key, value, origin)` triples before any value is interpreted.

use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::ConfigError;
use super::keys::KEYS;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The key table's default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A `-Dkey=value` dynamic property.
    Dynamic,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Dynamic => f.write_str("-D"),
        }
    }
}

/// One raw setting: a key as written, its text, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The key as written (maybe unknown).
    pub key: String,
    /// The value as text.
    pub value: String,
    /// Its origin.
    pub origin: Source,
}

/// Reads `-Dkey=value` items (the `-D` already stripped).
pub fn dynamic(items: &[String]) -> Result<Vec<Raw>, ConfigError> {
    items
        .iter()
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::NotKeyValue { item: item.clone() })?;
            Ok(Raw {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
                origin: Source::Dynamic,
            })
        })
        .collect()
}

/// The settings among `env` whose names are those of known keys; other variables (including
/// mesoflow's own `MESOFLOW_CONF_DIR`, `MESOFLOW_LOG`, ...) are none of the configuration's
/// business and are skipped without a word.
pub fn environment(env: &[(String, String)]) -> Vec<Raw> {
    let names: Vec<(String, &str)> = KEYS.iter().map(|k| (k.env_name(), k.name)).collect();
    env.iter()
        .filter_map(|(name, value)| {
            let (_, key) = names.iter().find(|(env_name, _)| env_name == name)?;
            Some(Raw {
                key: (*key).to_owned(),
                value: value.trim().to_owned(),
                origin: Source::Env(name.clone()),
            })
        })
        .collect()
}

/// The file to read: `explicit` (it must exist), else `config.yaml` in `conf_dir`, else
/// `flink-conf.yaml` there; `None` when there is no file to read.
pub fn locate(explicit: Option<&Path>, conf_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    let dir = conf_dir?;
    ["config.yaml", "flink-conf.yaml"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Reads a configuration file. A file named `flink-conf.yaml` is read as Flink reads it: one
/// `key: value` per line, `#` comments, no YAML (so `role: *` works unquoted); any other file is
/// YAML, flat (`rest.port: 8081`), nested (`rest: {port: 8081}`) or a mix. Lines of a
/// `flink-conf.yaml` that are not `key: value` are returned as warnings, as Flink logs them.
pub fn file(path: &Path) -> Result<(Vec<Raw>, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if path.file_name().is_some_and(|n| n == "flink-conf.yaml") {
        Ok(legacy(path, &text))
    } else {
        Ok((yaml(path, &text)?, Vec::new()))
    }
}

/// Flink's pre-1.19 `flink-conf.yaml` reader (`GlobalConfiguration.loadYAMLResource`).
fn legacy(path: &Path, text: &str) -> (Vec<Raw>, Vec<String>) {
    let mut raws = Vec::new();
    let mut warnings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(": ") {
            Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => {
                raws.push(Raw {
                    key: key.trim().to_owned(),
                    value: value.trim().to_owned(),
                    origin: Source::File(path.to_owned()),
                })
            }
            _ => warnings.push(format!(
                "{}:{}: '{line}' is not 'key: value' and is ignored",
                path.display(),
                number + 1
            )),
        }
    }
    (raws, warnings)
}

fn yaml(path: &Path, text: &str) -> Result<Vec<Raw>, ConfigError> {
    let bad = |message: String| ConfigError::Yaml {
        path: path.to_owned(),
        message,
    };
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut raws = Vec::new();
    match docs.into_iter().next() {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Hash(map)) => flatten(path, "", &map, &mut raws).map_err(bad)?,
        Some(_) => return Err(bad("the top level is not a map of keys to values".into())),
    }
    Ok(raws)
}

/// Joins nested maps' keys with `.`: `rest: {port: 8081}` is `rest.port: 8081`.
fn flatten(
    path: &Path,
    prefix: &str,
    map: &yaml_rust2::yaml::Hash,
    out: &mut Vec<Raw>,
) -> Result<(), String> {
    for (k, v) in map {
        let name = scalar(k).ok_or_else(|| format!("a key under '{prefix}' is not a scalar"))?;
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        let value = match v {
            Yaml::Hash(inner) => {
                flatten(path, &key, inner, out)?;
                continue;
            }
            // `key:` with nothing after it leaves the key unset.
            Yaml::Null => continue,
            Yaml::Array(items) => items
                .iter()
                .map(|item| {
                    scalar(item).ok_or_else(|| format!("{key}: a list item is not a scalar"))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => scalar(other).ok_or_else(|| format!("{key}: unsupported value"))?,
        };
        out.push(Raw {
            key,
            value,
            origin: Source::File(path.to_owned()),
        });
    }
    Ok(())
}

fn scalar(y: &Yaml) -> Option<String> {
    Some(match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => return None,
    })
}
