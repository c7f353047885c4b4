//! The configuration file (`$XDG_CONFIG_HOME/verbatim/config.toml`): defaults for every
//! command. Precedence: command-line flags, then environment variables, then this file, then
//! built-in defaults. It works by turning each setting into the default value of the matching
//! clap argument, so clap's own order (flag > env > default) gives exactly that precedence
//! and `--help` shows the configured defaults.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::error::CliError;
use super::exit_code;

pub const AFTER_HELP: &str = "\
Example config.toml (every key is optional; a [command] table applies to that command only):

  model = \"small.en\"        # any command that takes --model
  language = \"auto\"
  threads = 4
  vad = true                # false = --no-vad
  [transcribe]
  format = [\"srt\", \"json\"]
  output_dir = \"~/transcripts\"
  [subtitle]
  preset = \"netflix\"
  format = [\"srt\", \"vtt\"]
  jobs = 2

Keys are the long option names with - or _ (max_cps, beam-size). Precedence: flags, then
environment variables (VERBATIM_MODEL...), then this file, then built-in defaults.
VERBATIM_CONFIG names another file; VERBATIM_CONFIG=/dev/null ignores it.";

/// `verbatim config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print where the config file is (whether or not it exists).
    Path,
    /// Print the effective settings and where each comes from.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// One setting read from the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The command table it is in (`None`: top level, every command).
    pub scope: Option<String>,
    /// The argument id it sets (`no_vad` for `vad`).
    pub arg: String,
    /// The key as written.
    pub key: String,
    /// The value as clap parses it.
    pub value: String,
    /// 1-based line in the file.
    pub line: usize,
}

/// Where the config file is: `$VERBATIM_CONFIG`, else `$XDG_CONFIG_HOME/verbatim/config.toml`,
/// else `~/.config/verbatim/config.toml`.
pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("VERBATIM_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base =
        verbatim::xdg::base_dir("XDG_CONFIG_HOME", ".config").unwrap_or_else(|| PathBuf::from("."));
    base.join("verbatim").join("config.toml")
}

/// Reads and checks the config file against the CLI's arguments. A missing file is no
/// settings; a bad one is an error naming the file, the line and the key.
pub fn load(cmd: &clap::Command) -> Result<Vec<Entry>, String> {
    let path = config_path();
    // A config file is a few lines; 1 MiB is far more than any needs.
    let text = match verbatim::textfile::read_limited(&path, 1 << 20) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "{}: cannot read the config file: {e}",
                path.display()
            ))
        }
    };
    parse(&text, cmd).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses config text; errors start with `line N:`.
pub fn parse(text: &str, cmd: &clap::Command) -> Result<Vec<Entry>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(1);
        format!(
            "line {line}: {}",
            e.message().lines().next().unwrap_or("invalid TOML")
        )
    })?;
    let commands: Vec<&clap::Command> = cmd.get_subcommands().collect();
    let mut entries = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                let Some(sub) = commands.iter().find(|c| c.get_name() == key) else {
                    return Err(format!(
                        "line {}: unknown command table [{key}]",
                        line_of(text, key, None)
                    ));
                };
                for (k, v) in inner {
                    entries.push(entry(text, Some(sub), k, v, Some(key))?);
                }
            }
            _ => {
                let e = entry(text, None, key, value, None)?;
                // A top-level key must mean something to at least one command.
                if !commands.iter().any(|c| has_arg(c, &e.arg)) {
                    return Err(format!(
                        "line {}: unknown key `{key}` (keys are long option names such as \
                         model, language, threads, format, preset, vad)",
                        e.line
                    ));
                }
                entries.push(e);
            }
        }
    }
    Ok(entries)
}

fn has_arg(cmd: &clap::Command, id: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_id().as_str() == id)
}

fn entry(
    text: &str,
    sub: Option<&clap::Command>,
    key: &str,
    value: &toml::Value,
    scope: Option<&str>,
) -> Result<Entry, String> {
    let line = line_of(text, key, scope);
    let id = key.replace('-', "_");
    // `listen` named its compute device `compute-device` while its `--device` was the
    // microphone (now `--mic`); the key still means the compute device.
    let id = if id == "compute_device" {
        "device".to_string()
    } else {
        id
    };
    let (arg, value) = if id == "vad" {
        // `vad = false` is `--no-vad`.
        match value {
            toml::Value::Boolean(b) => ("no_vad".to_string(), (!b).to_string()),
            _ => return Err(format!("line {line}: key `vad` must be true or false")),
        }
    } else {
        let v = match value {
            toml::Value::String(s) => expand_home(s),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?
                .join(","),
            _ => return Err(format!("line {line}: key `{key}` has an unsupported value")),
        };
        (id, v)
    };
    if let Some(sub) = sub {
        if !has_arg(sub, &arg) {
            return Err(format!(
                "line {line}: `{key}` is not an option of `verbatim {}`",
                sub.get_name()
            ));
        }
    }
    Ok(Entry {
        scope: scope.map(str::to_string),
        arg,
        key: key.to_string(),
        value,
        line,
    })
}

fn expand_home(s: &str) -> String {
    match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest).display().to_string(),
        _ => s.to_string(),
    }
}

/// The line a key is set on (inside its table when `scope` is given).
fn line_of(text: &str, key: &str, scope: Option<&str>) -> usize {
    let mut in_scope = scope.is_none();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            if scope.is_none() && name == key {
                return i + 1;
            }
            in_scope = scope == Some(name);
            continue;
        }
        if in_scope {
            let k = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if k == key {
                return i + 1;
            }
        }
    }
    1
}

/// Makes every setting the default of its argument: top-level keys for every command that
/// has the argument, `[command]` tables for that command (and they win).
pub fn apply(mut cmd: clap::Command, entries: &[Entry]) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let global = entries.iter().filter(|e| e.scope.is_none());
        let scoped = entries.iter().filter(|e| e.scope.as_deref() == Some(&name));
        for e in global.chain(scoped) {
            let has = cmd
                .find_subcommand(&name)
                .is_some_and(|c| has_arg(c, &e.arg));
            if has {
                // clap keeps default values as 'static; a config is read once per process.
                let value: &'static str = Box::leak(e.value.clone().into_boxed_str());
                let id = e.arg.clone();
                cmd = cmd.mut_subcommand(&name, |sub| {
                    sub.mut_arg(id, |a| a.default_value(value).required(false))
                });
            }
        }
    }
    cmd
}

/// `verbatim config path|show`.
pub fn run(args: ConfigArgs, cmd: &clap::Command) -> Result<i32, CliError> {
    match args.action {
        ConfigAction::Path => {
            println!("{}", config_path().display());
            Ok(exit_code::OK)
        }
        ConfigAction::Show { json } => {
            let entries = load(cmd).map_err(CliError::Failure)?;
            let path = config_path();
            let mut rows: Vec<(String, String, String)> = Vec::new();
            // The common settings, always shown, then anything else the file sets.
            let common: [(&str, &str, Option<&str>, &str); 5] = [
                (
                    "model",
                    "model",
                    Some("VERBATIM_MODEL"),
                    verbatim::models::DEFAULT_MODEL,
                ),
                (
                    "vad_model",
                    "vad_model",
                    Some("VERBATIM_VAD_MODEL"),
                    "(next to the model, else silero-v6.2.0)",
                ),
                ("language", "language", None, "auto"),
                (
                    "threads",
                    "threads",
                    None,
                    "(the cores, shared among concurrent transcriptions)",
                ),
                ("vad", "no_vad", None, "true"),
            ];
            for (key, arg, env, default) in common {
                let from_file = entries.iter().find(|e| e.scope.is_none() && e.arg == arg);
                let env_value = env.and_then(|v| std::env::var(v).ok().map(|x| (v, x)));
                let (value, source) = match (env_value, from_file) {
                    (Some((var, x)), _) => (x, format!("environment ({var})")),
                    (None, Some(e)) => (
                        if key == "vad" {
                            (e.value != "true").to_string()
                        } else {
                            e.value.clone()
                        },
                        format!("{} line {}", path.display(), e.line),
                    ),
                    (None, None) => (default.to_string(), "built-in default".to_string()),
                };
                rows.push((key.to_string(), value, source));
            }
            for e in &entries {
                if e.scope.is_none() && common.iter().any(|c| c.1 == e.arg) {
                    continue;
                }
                let key = match &e.scope {
                    Some(s) => format!("{s}.{}", e.key),
                    None => e.key.clone(),
                };
                let value = if e.arg == "no_vad" {
                    (e.value != "true").to_string()
                } else {
                    e.value.clone()
                };
                rows.push((key, value, format!("{} line {}", path.display(), e.line)));
            }
            let mut out = String::new();
            if json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(k, v, s)| serde_json::json!({"key": k, "value": v, "source": s}))
                    .collect();
                let doc = serde_json::json!({
                    "path": path.display().to_string(),
                    "exists": path.is_file(),
                    "settings": list,
                });
                out.push_str(&serde_json::to_string_pretty(&doc).unwrap_or_default());
                out.push('\n');
            } else {
                out.push_str(&format!(
                    "# {} ({})\n",
                    path.display(),
                    if path.is_file() { "found" } else { "not found" }
                ));
                let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
                for (k, v, s) in rows {
                    out.push_str(&format!("{k:width$}  {v}    # {s}\n"));
                }
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
            Ok(exit_code::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_long_option_name_is_a_key() {
        // Keys are matched to argument ids; an option whose long name differs from its id
        // (`--type` on a field `type_text`) could not be set from the file.
        let cli = crate::cli::Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let key = format!("[{}]\n{long} = \"x\"\n", sub.get_name());
                    let parsed = parse(&key, &cli);
                    assert!(
                        !parsed.is_err_and(|e| e.contains("is not an option")),
                        "verbatim {} --{long}: not a config key",
                        sub.get_name()
                    );
                }
            }
        }
    }
}
