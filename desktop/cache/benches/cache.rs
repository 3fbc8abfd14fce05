//! The cache against design section 7's budgets, on a real file:
//! 10,000 conversations and 100,000 messages (one conversation holds 5,000).
//!
//!   cargo bench -p confab-cache --bench cache
//!
//! Prints the median and worst of several runs for: list all 10,000
//! conversations (budget 50 ms), open the 5,000-message conversation (150 ms),
//! search the 100,000 messages (50 ms), and a local append (one transaction
//! with its outbox entry).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use confab_bench_report::Report;
use confab_cache::Cache;
use confab_wire::conversations::{Conversation, ConversationDetail, Message, Role};
use confab_wire::library::ListFilter;

const CONVERSATIONS: usize = 10_000;
const MESSAGES: usize = 100_000;
const BIG: usize = 5_000;

const WORDS: &[&str] = &[
    "meeting", "project", "travel", "budget", "design", "review", "lunch", "report", "draft",
    "release", "garden", "recipe", "weekend", "invoice", "server", "deploy", "question", "idea",
    "family", "holiday", "music", "football", "contract", "launch", "research", "paper", "school",
    "doctor", "birthday", "flight", "hotel", "museum", "coffee", "bicycle", "mountain", "river",
];

fn text(seed: usize, words: usize) -> String {
    (0..words)
        .map(|i| WORDS[(seed * 31 + i * 7 + i * i) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f` `runs` times and reports the median against `budget_ms`. An
/// error, or an answer without rows, fails the run: a broken query must not
/// look fast.
fn measure(
    report: &mut Report,
    name: &str,
    budget_ms: Option<u64>,
    runs: usize,
    mut f: impl FnMut() -> confab_cache::Result<usize>,
) {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        size = match f() {
            Ok(0) => return report.failed(name, "answered no rows"),
            Ok(rows) => rows,
            Err(err) => return report.failed(name, err),
        };
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[runs / 2];
    let worst = times[runs - 1];
    let figure = format!(
        "median {:.2} ms, worst {:.2} ms, {size} rows",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    println!("{name:<48} {figure}");
    match budget_ms {
        Some(b) => report.budget(
            name,
            figure,
            format!("median {b} ms"),
            median <= Duration::from_millis(b),
        ),
        None => report.figure(name, figure),
    }
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut report = Report::new("cache");
    let dir = tempfile::tempdir()?;
    let cache = Cache::open(&dir.path().join("bench.db"))?;
    let base = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);

    let fill = Instant::now();
    let per_small = (MESSAGES - BIG) / (CONVERSATIONS - 1);
    let mut remainder = (MESSAGES - BIG) % (CONVERSATIONS - 1);
    let mut big_id = String::new();
    for c in 0..CONVERSATIONS {
        let id = ulid::Ulid::from_parts(1_800_000_000_000 + c as u64, c as u128).to_string();
        let count = if c == 0 {
            BIG
        } else if remainder > 0 {
            remainder -= 1;
            per_small + 1
        } else {
            per_small
        };
        let messages: Vec<Message> = (0..count)
            .map(|m| Message {
                id: ulid::Ulid::from_parts(1_800_000_000_000 + m as u64, (c * BIG + m) as u128)
                    .to_string(),
                role: if m % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: text(c * 13 + m, 12 + m % 30),
                timestamp: base + chrono::Duration::seconds(m as i64),
                reply: None,
            })
            .collect();
        let conversation = Conversation {
            id: id.clone(),
            title: text(c, 3),
            created_at: base,
            updated_at: base + chrono::Duration::seconds(c as i64),
            version: 1,
            message_count: count as u64,
            last_message_preview: messages.last().map(|m| m.content.clone()),
            pinned: c % 500 == 0,
            archived: c % 50 == 1,
            assistant: Default::default(),
        };
        cache.apply_detail(&ConversationDetail {
            conversation,
            messages,
            next_cursor: None,
        })?;
        if c == 0 {
            big_id = id;
        }
    }
    println!(
        "filled {CONVERSATIONS} conversations / {MESSAGES} messages in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let r = &mut report;
    measure(r, "list every active conversation", Some(50), 15, || {
        cache
            .list(ListFilter::Active, 0, CONVERSATIONS as u32)
            .map(|l| l.len())
    });
    measure(r, "list the first screen (100)", None, 50, || {
        cache.list(ListFilter::Active, 0, 100).map(|l| l.len())
    });
    measure(
        r,
        "open the 5,000-message conversation",
        Some(150),
        15,
        || {
            cache
                .get(&big_id)
                .map(|v| v.map(|v| v.messages.len()).unwrap_or(0))
        },
    );
    // One word; two words that occur together (the opening of a message's
    // text: generated words at positions of the same parity, so not any
    // two); a prefix.
    let pair = text(7, 2);
    for query in ["museum", pair.as_str(), "mount"] {
        measure(
            r,
            &format!("search {query:?} (50 results)"),
            Some(50),
            15,
            || cache.search(query, 50).map(|h| h.len()),
        );
    }
    let target = big_id.clone();
    measure(
        r,
        "append a message (one transaction + outbox)",
        None,
        50,
        || {
            let id = ulid::Ulid::new().to_string();
            cache
                .append(
                    &target,
                    &id,
                    Role::User,
                    "a new message",
                    confab_cache::now(),
                )
                .map(|_| 1)
        },
    );
    let size = std::fs::metadata(dir.path().join("bench.db"))?.len()
        + std::fs::metadata(dir.path().join("bench.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    report.figure(
        "cache file, 10,000 conversations / 100,000 messages",
        format!("{:.1} MB", size as f64 / 1e6),
    );
    Ok(report.finish())
}
