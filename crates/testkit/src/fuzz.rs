//! The fuzz runner of the workspace's fuzz targets (`cargo xtask fuzz`; short runs in `cargo
//! test`). `cargo fuzz` needs a nightly toolchain and libFuzzer's sanitizer builds of the whole
//! server (aws-lc, SQLite) on a 2-core machine: instead, proptest generates the inputs: seeds from
//! a corpus (payloads of real clients, taken from the tests), mutated byte-wise and token-wise,
//! mixed with fully random input. A target is a function that must neither panic nor break its
//! own assertions (for HTTP targets: never a 5xx). A failing input is shrunk and reported with the
//! seed that reproduces the run.
//!
//! The budget comes from the environment: `CONSENTRY_FUZZ_CASES` inputs (default 2,000) or
//! `CONSENTRY_FUZZ_SECONDS` (default 2), whichever comes first, per target;
//! `CONSENTRY_FUZZ_SEED` (a number) replays a run.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

pub use proptest;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// How many inputs, for how long, from which seed.
#[derive(Clone, Debug)]
pub struct Budget {
    pub cases: u64,
    pub time: Duration,
    pub seed: u64,
}

impl Budget {
    pub fn from_env() -> Budget {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Budget {
            cases: var("CONSENTRY_FUZZ_CASES").unwrap_or(2_000),
            time: Duration::from_secs(var("CONSENTRY_FUZZ_SECONDS").unwrap_or(2)),
            seed: var("CONSENTRY_FUZZ_SEED").unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub inputs: u64,
    pub elapsed: Duration,
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

fn fails<V>(target: &mut impl FnMut(&V), v: &V) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| target(v))).err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Run `target` on inputs of `strategy` within the budget of the environment; on a panic, shrink
/// the input and fail naming it. Prints one line: inputs run, time, seed.
pub fn run<S>(name: &str, strategy: S, mut target: impl FnMut(&S::Value)) -> Report
where
    S: Strategy,
    S::Value: Debug,
{
    let budget = Budget::from_env();
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(budget.seed));
    let started = Instant::now();
    let mut inputs = 0;
    while inputs < budget.cases && started.elapsed() < budget.time {
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => panic!("fuzz {name}: cannot generate an input: {e}"),
        };
        inputs += 1;
        let Some(mut message) = fails(&mut target, &tree.current()) else {
            continue;
        };
        // Shrink: the simplest input that still fails.
        let mut smallest = format!("{:?}", tree.current());
        let mut steps = 0;
        while steps < 10_000 && tree.simplify() {
            steps += 1;
            match fails(&mut target, &tree.current()) {
                Some(m) => {
                    message = m;
                    smallest = format!("{:?}", tree.current());
                }
                None => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
        panic!(
            "fuzz {name}: input #{inputs} failed (replay: CONSENTRY_FUZZ_SEED={}): {message}\n\
             smallest failing input: {smallest}",
            budget.seed
        );
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fuzz {name}: {inputs} inputs in {:.1} s ({:.0}/s), 0 failures (seed {})",
        elapsed.as_secs_f64(),
        inputs as f64 / elapsed.as_secs_f64().max(1e-9),
        budget.seed
    );
    Report { inputs, elapsed }
}

/// One change to an input.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Overwrite the byte at (index modulo length).
    Set(usize, u8),
    /// Insert a dictionary token at an index.
    Token(usize, usize),
    /// Insert random bytes at an index.
    Insert(usize, Vec<u8>),
    /// Remove up to `len` bytes at an index.
    Remove(usize, usize),
    /// Repeat a slice of the input (at, len) right after itself.
    Repeat(usize, usize),
}

fn apply(mut input: Vec<u8>, mutations: &[Mutation], dictionary: &[&str]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Set(i, b) => {
                if !input.is_empty() {
                    let n = input.len();
                    input[i % n] = *b;
                }
            }
            Mutation::Token(i, t) => {
                if !dictionary.is_empty() {
                    let token = dictionary[t % dictionary.len()].as_bytes();
                    let i = at(*i, input.len());
                    input.splice(i..i, token.iter().copied());
                }
            }
            Mutation::Insert(i, bytes) => {
                let i = at(*i, input.len());
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(i, len) => {
                if !input.is_empty() {
                    let i = i % input.len();
                    let end = (i + len).min(input.len());
                    input.drain(i..end);
                }
            }
            Mutation::Repeat(i, len) => {
                if !input.is_empty() && input.len() < 64 * 1024 {
                    let i = i % input.len();
                    let end = (i + len).min(input.len());
                    let part = input[i..end].to_vec();
                    input.splice(end..end, part);
                }
            }
        }
    }
    input
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

/// Tokens that tend to matter to parsers of URLs, forms, JSON and JWTs.
pub const COMMON_TOKENS: &[&str] = &[
    "%",
    "%2",
    "%25",
    "%00",
    "%ZZ",
    "%C3%A9",
    "%E2%80%AE",
    "%FF",
    "&",
    "=",
    "+",
    "?",
    "#",
    "/",
    "//",
    ":",
    ";",
    ",",
    ".",
    "..",
    "@",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\u{202e}",
    "é",
    "\u{fffd}",
    " ",
    "\t",
    "\n",
    "\r\n",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "-0",
    "9223372036854775807",
    "18446744073709551616",
    "1.5",
    "[]",
    "{}",
    "\"\"",
    "http://",
    "https://",
    "http://127.0.0.1:1/",
    "https://[::1]/",
    "localhost",
    "javascript:",
    "data:",
    "file:",
    "xn--",
    "*",
    ".",
    "=",
    "eyJ",
    "..",
    "===",
];

/// Inputs: a seed of `corpus` (or nothing) with up to 8 mutations, or (one time in eight) random
/// bytes; `dictionary` is added to [`COMMON_TOKENS`].
pub fn mutated(
    corpus: Vec<Vec<u8>>,
    dictionary: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> {
    let corpus = if corpus.is_empty() {
        vec![Vec::new()]
    } else {
        corpus
    };
    let words: Vec<&'static str> = COMMON_TOKENS
        .iter()
        .chain(dictionary.iter())
        .copied()
        .collect();
    prop_oneof![
        7 => (
            proptest::sample::select(corpus),
            proptest::collection::vec(mutation(), 0..8)
        )
            .prop_map(move |(seed, ms)| apply(seed, &ms, &words)),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Strings of [`mutated`] (lossy UTF-8: the parsers under test take `&str`).
pub fn mutated_text(
    corpus: &[&str],
    dictionary: &'static [&'static str],
) -> impl Strategy<Value = String> {
    let corpus = corpus.iter().map(|s| s.as_bytes().to_vec()).collect();
    mutated(corpus, dictionary).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every file of a corpus folder (`crates/<crate>/fuzz/corpus/<target>/`), as bytes.
pub fn corpus_dir(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}
