//! `wordcount`: rolling count of words from a text file, a directory of files, or generated text.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::generators::TextGen;
use crate::jobs::format::push_u64;
use crate::jobs::{JobSpec, ParamSpec, Params, events_bound};
use crate::keyed::Count;
use crate::sources::{GeneratorBounds, GeneratorSource, TextFileSource, file_splits};
use crate::stream::StreamEnvironment;

/// The job.
pub const SPEC: JobSpec = JobSpec {
    name: "wordcount",
    about: "rolling count per word (maximal alphanumeric runs, lower-cased); lines word count",
    params: &[
        ParamSpec {
            name: "input",
            default: "",
            help: "text file or directory of files (generated text when absent)",
        },
        ParamSpec {
            name: "events",
            default: "1000000",
            help: "generated lines (0 = unbounded); ignored with input",
        },
        ParamSpec {
            name: "seed",
            default: "0",
            help: "seed of the generated text",
        },
        ParamSpec {
            name: "rate",
            default: "0",
            help: "generated lines per second (0 = as fast as possible)",
        },
    ],
    build,
};

/// Splits a line into maximal runs of alphanumeric characters, lower-cased.
pub fn tokenize(line: &str, out: &mut Vec<String>) {
    for word in line.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if word.bytes().all(|b| !b.is_ascii_uppercase()) && word.is_ascii() {
            out.push(word.to_string());
        } else {
            out.push(word.to_lowercase());
        }
    }
}

fn build(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    let lines = match params.get("input").filter(|s| !s.is_empty()) {
        Some(path) => {
            // Checked now, so that a missing file is reported before anything starts.
            let splits = Arc::new(file_splits(&PathBuf::from(path))?);
            env.add_source("text-file", move |ctx| {
                Ok(TextFileSource::new(&splits, ctx))
            })
        }
        None => {
            let text = TextGen::new(params.u64_or("seed", 0)?);
            let bounds = GeneratorBounds {
                events: events_bound(params)?,
                rate: params.u64_or("rate", 0)?,
            };
            env.add_source("text", move |ctx| {
                Ok(GeneratorSource::new(
                    move |i| Some(text.line(i)),
                    bounds,
                    ctx,
                ))
            })
        }
    };
    lines
        .flat_map(|line: String, out: &mut Vec<String>| tokenize(&line, out))
        .key_by(|w: &String| w.clone())
        .aggregate(Count)
        .sink_lines("output", |(word, count), out| {
            out.push_str(word);
            out.push(' ');
            push_u64(out, *count);
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_takes_maximal_alphanumeric_runs_lower_cased() {
        let mut v = Vec::new();
        tokenize("Hello, wORLD! it's 42nd--Street ÄÖ", &mut v);
        assert_eq!(v, vec!["hello", "world", "it", "s", "42nd", "street", "äö"]);
    }
}
