//! Each service's settings parsed by its own clap parser from the flags a test sets, never
//! from the environment.

use std::ffi::{OsStr, OsString};

/// A service's configuration parsed by its own clap parser, as its `main` parses it (a setting
/// the arguments do not name keeps its default, and a value is refused as the service would
/// refuse it), except that nothing is read from the environment: each `env = "…"` of `C` is
/// dropped before parsing, so a developer's `LEDGER_BATCH_SIZE` or `INGEST_RATE_LIMIT_PER_SEC`
/// never reaches a test.
pub fn parse_config<C: clap::Parser>(args: &[OsString]) -> anyhow::Result<C> {
    let command = without_env(C::command());
    let program = OsString::from(command.get_name());
    let mut matches =
        command.try_get_matches_from(std::iter::once(program).chain(args.iter().cloned()))?;
    Ok(C::from_arg_matches_mut(&mut matches)?)
}

/// `command` with no argument read from the environment.
pub(super) fn without_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| arg.env(None::<&'static str>))
}

/// Command-line arguments of one service.
#[derive(Debug, Clone, Default)]
pub(super) struct Args(Vec<OsString>);

impl Args {
    pub(super) fn set(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
        self
    }

    pub(super) fn set_some(self, flag: &str, value: Option<impl AsRef<OsStr>>) -> Self {
        match value {
            Some(value) => self.set(flag, value),
            None => self,
        }
    }

    pub(super) fn parse<C: clap::Parser>(&self) -> anyhow::Result<C> {
        parse_config(&self.0)
    }
}

#[test]
fn service_configurations_read_nothing_from_the_environment() {
    use clap::CommandFactory as _;
    for command in [
        ingest::Config::command(),
        ledger::Config::command(),
        invoicing::Config::command(),
        notifier::Config::command(),
    ] {
        let name = command.get_name().to_string();
        assert!(
            command.get_arguments().any(|arg| arg.get_env().is_some()),
            "{name} reads its settings from the environment"
        );
        let read: Vec<_> = without_env(command)
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(|env| env.to_owned()))
            .collect();
        assert!(read.is_empty(), "{name} still reads {read:?}");
    }
}
