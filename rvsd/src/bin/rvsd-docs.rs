//! Writes rvsd's and rvsctl's man pages and shell completions, generated from their
//! command-line parsers, into the folder given (the Debian package takes them from target/docs):
//!   cargo run -p rvsd --bin rvsd-docs -- target/docs

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

#[allow(dead_code)] // the fields are read by rvsd itself, not here
#[path = "../args.rs"]
mod args;

#[allow(dead_code)] // the fields are read by rvsctl itself, not here
#[path = "../../../control/src/rvsctl_args.rs"]
mod rvsctl_args;

/// NAME.8 and NAME's completions for bash (NAME.bash), zsh (_NAME) and fish (NAME.fish).
fn write_one(dir: &Path, name: &str, cmd: clap::Command) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.8")), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), name, dir)?;
    }
    Ok(())
}

fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_one(dir, "rvsd", args::Args::command())?;
    write_one(dir, "rvsctl", rvsctl_args::Args::command())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: rvsd-docs DIR");
        return ExitCode::FAILURE;
    };
    match write(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvsd-docs: {}: {e}", Path::new(&dir).display());
            ExitCode::FAILURE
        }
    }
}
