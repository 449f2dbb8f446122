//! The documentation matches the code: every setting is in docs/configuration.md
//! with its flag, variable and default.

use clap::CommandFactory;
use hourglassdb::cli::Cli;

#[test]
fn configuration_doc_lists_every_setting_with_its_default() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let command = Cli::command();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `--{long}` |")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for --{long}"));
        if let Some(env) = arg.get_env() {
            assert!(
                row.contains(&format!("`{}`", env.to_string_lossy())),
                "the row of --{long} names its variable: {row}"
            );
        }
        for default in arg.get_default_values() {
            let default = default.to_string_lossy();
            assert!(
                row.contains(&format!("| `{default}` |")),
                "the row of --{long} gives its default {default}: {row}"
            );
        }
    }
}
