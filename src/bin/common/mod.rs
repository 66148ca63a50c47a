//! What the binaries share: bad input (exit code 2) vs failure (exit code 1).

/// An error caused by the user's input: exit code 2.
#[derive(Debug)]
pub struct BadInput(pub anyhow::Error);

/// Wraps an error as bad input.
pub fn bad<E: Into<anyhow::Error>>(e: E) -> BadInput {
    BadInput(e.into())
}

/// How a run ended when it did not succeed.
pub enum Outcome {
    /// Bad input: exit code 2.
    Bad(BadInput),
    /// A failure (I/O, drawing): exit code 1.
    Failed(anyhow::Error),
}

impl From<BadInput> for Outcome {
    fn from(b: BadInput) -> Self {
        Outcome::Bad(b)
    }
}

/// Wraps an error as a failure.
#[allow(dead_code)]
pub fn failed<E: Into<anyhow::Error>>(e: E) -> Outcome {
    Outcome::Failed(e.into())
}

/// Prints the error on stderr and exits with 2 (bad input) or 1 (failure); returns on success.
pub fn finish(result: Result<(), Outcome>) {
    match result {
        Ok(()) => {}
        Err(Outcome::Bad(e)) => {
            eprintln!("error: {:#}", e.0);
            std::process::exit(2);
        }
        Err(Outcome::Failed(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
