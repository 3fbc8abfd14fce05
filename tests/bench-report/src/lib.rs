//! The benchmarks' report. Each benchmark prints its own detail as it goes,
//! then one `summary` line per figure (tab-separated: bench, what, figure,
//! budget, verdict), which `scripts/bench` gathers into one table. A
//! benchmark whose budget is exceeded, or that could not measure, exits
//! non-zero.

use std::fmt::Display;
use std::process::ExitCode;

/// The figures of one benchmark run.
pub struct Report {
    bench: &'static str,
    rows: Vec<Row>,
    failures: Vec<String>,
}

struct Row {
    what: String,
    figure: String,
    budget: String,
    verdict: &'static str,
}

/// The prefix `scripts/bench` looks for.
pub const SUMMARY: &str = "summary\t";

impl Report {
    pub fn new(bench: &'static str) -> Self {
        Self {
            bench,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A figure without a budget.
    pub fn figure(&mut self, what: impl Display, figure: impl Display) {
        self.rows.push(Row {
            what: clean(what),
            figure: clean(figure),
            budget: String::new(),
            verdict: "",
        });
    }

    /// A figure against its budget; `held` says whether it stayed within.
    pub fn budget(
        &mut self,
        what: impl Display,
        figure: impl Display,
        budget: impl Display,
        held: bool,
    ) {
        let what = clean(what);
        let figure = clean(figure);
        let budget = clean(budget);
        if !held {
            eprintln!("OVER BUDGET: {what}: {figure} (budget {budget})");
            self.failures
                .push(format!("{what}: {figure} over {budget}"));
        }
        self.rows.push(Row {
            what,
            figure,
            budget,
            verdict: if held { "ok" } else { "OVER" },
        });
    }

    /// Something that should have been measured could not be: the run fails.
    pub fn failed(&mut self, what: impl Display, why: impl Display) {
        let (what, why) = (clean(what), clean(why));
        eprintln!("FAILED: {what}: {why}");
        self.failures.push(format!("{what}: {why}"));
        self.rows.push(Row {
            what,
            figure: why,
            budget: String::new(),
            verdict: "FAILED",
        });
    }

    /// Whether every budget held and nothing failed so far.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Prints the summary lines and answers the process's exit code.
    pub fn finish(self) -> ExitCode {
        for row in &self.rows {
            println!(
                "{SUMMARY}{}\t{}\t{}\t{}\t{}",
                self.bench, row.what, row.figure, row.budget, row.verdict
            );
        }
        if self.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{}: {} over budget or failed: {}",
                self.bench,
                self.failures.len(),
                self.failures.join("; ")
            );
            ExitCode::FAILURE
        }
    }
}

/// One line, no tabs: the summary is tab-separated.
fn clean(text: impl Display) -> String {
    text.to_string()
        .replace(['\t', '\n', '\r'], " ")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_exceeded_fails_the_run_and_a_held_one_does_not() {
        let mut held = Report::new("t");
        held.figure("rows", 10);
        held.budget("list", "14 ms", "50 ms", true);
        assert!(held.passed());
        assert_eq!(held.finish(), ExitCode::SUCCESS);

        let mut over = Report::new("t");
        over.budget("list", "74 ms", "50 ms", false);
        assert!(!over.passed());
        assert_eq!(over.finish(), ExitCode::FAILURE);

        let mut failed = Report::new("t");
        failed.failed("search", "no rows");
        assert_eq!(failed.finish(), ExitCode::FAILURE);
    }

    #[test]
    fn fields_stay_on_one_line_without_tabs() {
        assert_eq!(clean("a\tb\nc "), "a b c");
    }
}
