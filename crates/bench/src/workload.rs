//! What each request sends: one prompt text, the lines of a prompts file, or synthetic
//! prompts with target input and output token counts (normal draws, seeded).
//!
//! Prompt i is a pure function of the workload and i, so every target in a comparison gets
//! exactly the same requests, and a run can be repeated.

use protocol::openai::ChatMessage;
use serde_json::{Map, Value};
use sim::text::{SplitMix64, TokenText};

/// The lesson's Part 1 prompt, used when nothing else is given.
pub const DEFAULT_PROMPT: &str = "Explain machine learning in 3 sentences.";

/// One request's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Messages (without the system prompt).
    pub messages: Vec<ChatMessage>,
    /// System prompt.
    pub system: Option<String>,
    /// Output cap for this request.
    pub max_tokens: Option<u32>,
    /// Other request fields from a prompts file line (temperature, tools, ...), passed on.
    pub extra: Map<String, Value>,
    /// Synthetic workloads: the intended input length of the content, in `o200k_base` tokens.
    pub input_tokens: Option<u32>,
    /// True when the workload asks for exactly `max_tokens` output tokens (synthetic output
    /// lengths), so a different received length deserves a warning.
    pub fixed_output: bool,
}

/// Target token counts of synthetic prompts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthetic {
    /// Mean input tokens.
    pub input_mean: u32,
    /// Standard deviation of input tokens.
    pub input_stddev: u32,
    /// Mean output tokens (sets `max_tokens`).
    pub output_mean: u32,
    /// Standard deviation of output tokens.
    pub output_stddev: u32,
    /// Seed of every draw.
    pub seed: u64,
}

/// Where prompts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The same text every time.
    Text(String),
    /// Lines of a prompts file, used in turn (cycling when there are more requests).
    Lines(Vec<Prompt>),
    /// Generated prompts.
    Synthetic(Synthetic),
}

/// A workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Where prompts come from.
    pub source: Source,
    /// `--max-tokens`: the default output cap (a file line's own cap wins).
    pub max_tokens: Option<u32>,
    /// `--system`: the default system prompt (a file line's own wins).
    pub system: Option<String>,
}

/// A problem in a prompts file, with its line number.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A line that cannot be used.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The file has no prompts.
    #[error(
        "the file has no prompts; write one JSON object per line, e.g. {{\"prompt\": \"...\"}}"
    )]
    Empty,
}

fn normal(rng: &mut SplitMix64, mean: u32, stddev: u32) -> u32 {
    if stddev == 0 {
        return mean.max(1);
    }
    // Box-Muller; u1 in (0, 1] keeps the log finite.
    let u1 = 1.0 - rng.next_f64();
    let u2 = rng.next_f64();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let v = f64::from(mean) + z * f64::from(stddev);
    v.round().clamp(1.0, f64::from(u32::MAX)) as u32
}

impl Workload {
    /// Parses a prompts file (JSONL): each line is a chat request body (`messages`, and any
    /// other fields, which are passed on; `model` and `stream` are set by the run) or
    /// `{"prompt": "..."}`. Blank lines are skipped.
    pub fn parse_lines(text: &str) -> Result<Vec<Prompt>, WorkloadError> {
        let mut prompts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let err = |message: String| WorkloadError::Line {
                line: line_no,
                message,
            };
            let value: Value = serde_json::from_str(line)
                .map_err(|e| err(format!("not JSON ({e}); expected an object per line")))?;
            let Value::Object(mut obj) = value else {
                return Err(err(
                    "expected a JSON object, e.g. {\"prompt\": \"...\"}".into()
                ));
            };
            let max_tokens = match obj
                .remove("max_completion_tokens")
                .or_else(|| obj.remove("max_tokens"))
            {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                    || err(format!("max_tokens must be a positive integer, got {v}")),
                )?),
            };
            let system = match obj.remove("system") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err(err("system must be a string".into())),
            };
            obj.remove("model");
            obj.remove("stream");
            obj.remove("stream_options");
            let messages = if let Some(p) = obj.remove("prompt") {
                let Value::String(p) = p else {
                    return Err(err("prompt must be a string".into()));
                };
                vec![ChatMessage::new("user", p)]
            } else if let Some(m) = obj.remove("messages") {
                let messages: Vec<ChatMessage> =
                    serde_json::from_value(m).map_err(|e| err(format!("messages: {e}")))?;
                if messages.is_empty() {
                    return Err(err("messages is empty; give at least one message".into()));
                }
                messages
            } else {
                return Err(err(
                    "has neither \"prompt\" nor \"messages\"; write {\"prompt\": \"...\"} or a chat request body".into(),
                ));
            };
            prompts.push(Prompt {
                messages,
                system,
                max_tokens,
                extra: obj,
                input_tokens: None,
                fixed_output: false,
            });
        }
        if prompts.is_empty() {
            return Err(WorkloadError::Empty);
        }
        Ok(prompts)
    }

    /// Prompt `i` of the run.
    pub fn prompt(&self, i: u64) -> Prompt {
        let mut prompt = match &self.source {
            Source::Text(text) => Prompt {
                messages: vec![ChatMessage::new("user", text.clone())],
                system: None,
                max_tokens: None,
                extra: Map::new(),
                input_tokens: None,
                fixed_output: false,
            },
            Source::Lines(lines) => {
                let n = lines.len().max(1) as u64;
                lines
                    .get((i % n) as usize)
                    .cloned()
                    .unwrap_or_else(|| Prompt {
                        messages: vec![ChatMessage::new("user", DEFAULT_PROMPT)],
                        system: None,
                        max_tokens: None,
                        extra: Map::new(),
                        input_tokens: None,
                        fixed_output: false,
                    })
            }
            Source::Synthetic(s) => {
                let mut rng = SplitMix64::new(s.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let input = normal(&mut rng, s.input_mean, s.input_stddev);
                let output = normal(&mut rng, s.output_mean, s.output_stddev);
                let mut text = TokenText::new(rng.next_u64());
                let content: String = (0..input).map(|_| text.next_token()).collect();
                Prompt {
                    messages: vec![ChatMessage::new("user", content)],
                    system: None,
                    max_tokens: Some(output),
                    extra: Map::new(),
                    input_tokens: Some(input),
                    fixed_output: true,
                }
            }
        };
        if prompt.max_tokens.is_none() {
            prompt.max_tokens = self.max_tokens;
        }
        if prompt.system.is_none() {
            prompt.system = self.system.clone();
        }
        prompt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_of_both_shapes() {
        let text = "{\"prompt\": \"hi\", \"max_tokens\": 5}\n\n{\"model\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"yo\"}], \"temperature\": 0.2, \"system\": \"be brief\"}\n";
        let lines = Workload::parse_lines(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].max_tokens, Some(5));
        assert_eq!(lines[1].extra["temperature"], 0.2);
        assert!(!lines[1].extra.contains_key("model"));
        assert_eq!(lines[1].system.as_deref(), Some("be brief"));
        let w = Workload {
            source: Source::Lines(lines),
            max_tokens: Some(9),
            system: None,
        };
        assert_eq!(w.prompt(0).max_tokens, Some(5), "the line's own cap wins");
        assert_eq!(w.prompt(1).max_tokens, Some(9));
        assert_eq!(w.prompt(2), w.prompt(0), "cycles");
    }

    #[test]
    fn file_errors_carry_line_numbers() {
        let err = Workload::parse_lines("{\"prompt\": \"a\"}\nnot json\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = Workload::parse_lines("{\"nothing\": 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prompt") && err.contains("messages"), "{err}");
        let err = Workload::parse_lines("[1]").unwrap_err().to_string();
        assert!(err.contains("object"), "{err}");
        let err = Workload::parse_lines("{\"prompt\": \"a\", \"max_tokens\": -1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_tokens"), "{err}");
        assert!(matches!(
            Workload::parse_lines("\n\n"),
            Err(WorkloadError::Empty)
        ));
    }

    #[test]
    fn synthetic_prompts_hit_their_token_targets() {
        let s = Synthetic {
            input_mean: 200,
            input_stddev: 50,
            output_mean: 64,
            output_stddev: 0,
            seed: 3,
        };
        let w = Workload {
            source: Source::Synthetic(s),
            max_tokens: None,
            system: None,
        };
        let mut sum = 0u64;
        for i in 0..200 {
            let p = w.prompt(i);
            let content = p.messages[0].text();
            let target = p.input_tokens.unwrap();
            assert_eq!(protocol::tokens::count_text(&content), u64::from(target));
            assert_eq!(p.max_tokens, Some(64));
            assert!(p.fixed_output);
            sum += u64::from(target);
        }
        let mean = sum as f64 / 200.0;
        assert!((mean - 200.0).abs() < 12.0, "{mean}");
        assert_eq!(w.prompt(5), w.prompt(5));
        assert_ne!(w.prompt(5), w.prompt(6));
    }

    #[test]
    fn defaults_apply() {
        let w = Workload {
            source: Source::Text(DEFAULT_PROMPT.into()),
            max_tokens: Some(100),
            system: Some("terse".into()),
        };
        let p = w.prompt(0);
        assert_eq!(p.max_tokens, Some(100));
        assert_eq!(p.system.as_deref(), Some("terse"));
        assert_eq!(p.messages[0].text(), DEFAULT_PROMPT);
    }
}
