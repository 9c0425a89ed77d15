//! Writes rvsd's man page and shell completions, generated from its command-line parser, into
//! the folder given (the Debian package takes them from target/docs):
//!   cargo run -p rvsd --bin rvsd-docs -- target/docs

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

#[allow(dead_code)] // the fields are read by rvsd itself, not here
#[path = "../args.rs"]
mod args;

fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = args::Args::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut page)?;
    std::fs::write(dir.join("rvsd.8"), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "rvsd", dir)?;
    }
    Ok(())
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
