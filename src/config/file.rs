//! `--config FILE`: a TOML file of `cairn serve` settings. Its keys are the long flag names
//! (`election-min-ms` or `election_min_ms`). Precedence, highest first: command-line flag,
//! `CAIRN_*` environment variable, config file, built-in default. The file is turned into
//! extra flags for the settings the first two did not set, so clap validates every value the
//! same way whatever its source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::parser::ValueSource;

/// `argv` with the settings of `serve --config FILE` (or `CAIRN_CONFIG`) appended as flags, for
/// every `serve` flag that neither the command line nor the environment set. `argv` comes back
/// unchanged when it has no `serve` subcommand or no config file, and also when clap rejects
/// it: the caller's own parse then reports that (or prints `--help`).
pub fn argv_with_config_file(command: clap::Command, mut argv: Vec<String>) -> Result<Vec<String>, String> {
    let Ok(matches) = command.clone().try_get_matches_from(&argv) else { return Ok(argv) };
    let Some(serve) = matches.subcommand_matches("serve") else { return Ok(argv) };
    let Some(path) = serve.get_one::<PathBuf>("config") else { return Ok(argv) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let serve_cmd = command.find_subcommand("serve").ok_or("no serve command")?;
    let flags: Vec<FlagInfo> = serve_cmd
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let source = serve.value_source(a.get_id().as_str());
            Some(FlagInfo {
                long,
                switch: matches!(a.get_action(), clap::ArgAction::SetTrue),
                set_elsewhere: matches!(source, Some(ValueSource::CommandLine | ValueSource::EnvVariable)),
            })
        })
        .collect();
    argv.extend(extra_args(&text, &flags)?);
    Ok(argv)
}

/// What the parser knows about one `serve` flag.
struct FlagInfo {
    /// Long name, kebab-case.
    long: String,
    /// A switch (`--flag`) rather than `--flag VALUE`.
    switch: bool,
    /// Already set on the command line or in the environment.
    set_elsewhere: bool,
}

/// Extra arguments for the settings in `toml_text` that nothing else set.
fn extra_args(toml_text: &str, flags: &[FlagInfo]) -> Result<Vec<String>, String> {
    let table: BTreeMap<String, toml::Value> = toml::from_str(toml_text).map_err(|e| format!("config file: {e}"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if long == "config" {
            return Err("config file: `config` cannot be set from a config file".into());
        }
        let flag =
            flags.iter().find(|f| f.long == long).ok_or_else(|| format!("config file: unknown setting `{key}`"))?;
        if flag.set_elsewhere {
            continue;
        }
        match (&value, flag.switch) {
            (toml::Value::Boolean(true), true) => out.push(format!("--{long}")),
            (toml::Value::Boolean(false), true) => {}
            (_, true) => return Err(format!("config file: `{key}` is a switch: use true or false")),
            (toml::Value::String(s), false) => out.push(format!("--{long}={s}")),
            (toml::Value::Integer(i), false) => out.push(format!("--{long}={i}")),
            (toml::Value::Float(f), false) => out.push(format!("--{long}={f}")),
            (toml::Value::Boolean(b), false) => out.push(format!("--{long}={b}")),
            _ => return Err(format!("config file: `{key}` must be a string or a number")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<FlagInfo> {
        vec![
            FlagInfo { long: "listen".into(), switch: false, set_elsewhere: false },
            FlagInfo { long: "election-min-ms".into(), switch: false, set_elsewhere: false },
            FlagInfo { long: "id".into(), switch: false, set_elsewhere: true },
            FlagInfo { long: "insecure-allow-anonymous".into(), switch: true, set_elsewhere: false },
        ]
    }

    #[test]
    fn file_fills_only_what_nothing_else_set() {
        let text = "listen = \"0.0.0.0:7001\"\nelection_min_ms = 700\nid = 9\ninsecure-allow-anonymous = true\n";
        let args = extra_args(text, &flags()).unwrap();
        assert_eq!(args, vec!["--election-min-ms=700", "--insecure-allow-anonymous", "--listen=0.0.0.0:7001"]);
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        assert!(extra_args("nope = 1", &flags()).unwrap_err().contains("unknown setting"));
        assert!(extra_args("insecure_allow_anonymous = 3", &flags()).unwrap_err().contains("switch"));
        assert!(extra_args("listen = [1]", &flags()).is_err());
        assert!(extra_args("not toml", &flags()).is_err());
    }
}
