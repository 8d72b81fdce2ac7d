//! Asking for a secret (a seed, a PIN, a passphrase) the command line did not carry.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use zeroize::Zeroizing;

/// Read a secret: from the terminal without echoing it when there is one (the prompt goes to
/// standard error), or else as one line of standard input (a script piping it in).
pub fn secret(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{prompt}: "))
            .map(Zeroizing::new)
            .context("cannot read the terminal");
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}
