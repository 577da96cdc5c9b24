//! Turning a request body into a job: parsing with the `protocol` crate's types, refusing what
//! the local model cannot do (with the field named and the fix), applying OpenAI's defaults,
//! and building the prompt's token ids.
//!
//! Everything here answers before the request reaches the queue, so a bad request never waits
//! behind others. Generation itself is the worker's; the wire shapes of answers are `wire`'s.

use protocol::openai::{
    ChatCompletionRequest, CompletionRequest, DEFAULT_COMPLETION_MAX_TOKENS, MessageContent,
    Prompt, Stop,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiError;
use crate::catalog::LOCAL_PREFIX;
use crate::engine::{GenParams, Prompter};
use crate::template::Message;

/// The most stop sequences a request may give (as OpenAI).
const MAX_STOPS: usize = 4;

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completion,
}

/// A request ready for the queue.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// Answer as SSE.
    pub stream: bool,
    /// End a stream with the `choices: []` usage chunk.
    pub include_usage: bool,
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// Sampling and stopping.
    pub params: GenParams,
}

/// Parses and checks a body for `api`; `seed` is used when the request gives none.
pub(crate) fn parse(
    api: Api,
    body: &[u8],
    prompter: &Prompter,
    seed: u64,
) -> Result<Parsed, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "We could not parse the JSON body of your request: {e}. Send a JSON object such as {}.",
            example(api)
        ))
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid(format!(
            "The request body must be a JSON object such as {}; got {}.",
            example(api),
            kind_of(&value)
        )));
    };
    match api {
        Api::Chat => parse_chat(typed(api, object)?, prompter, seed),
        Api::Completion => parse_completion(typed(api, object)?, prompter, seed),
    }
}

fn example(api: Api) -> &'static str {
    match api {
        Api::Chat => r#"{"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}"#,
        Api::Completion => r#"{"model": "smollm2", "prompt": "Once upon a time"}"#,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserializes the request type, and on failure finds the field at fault: each field is tried
/// alone next to a valid minimal request, the first that fails is named.
fn typed<T: DeserializeOwned>(api: Api, object: Map<String, Value>) -> Result<T, ApiError> {
    let error = match serde_json::from_value::<T>(Value::Object(object.clone())) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let message = error.to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return Err(ApiError::invalid(format!(
            "Missing required parameter: '{field}'. Send it as {}.",
            expected(field)
        ))
        .param(field));
    }
    let skeleton: &[(&str, Value)] = match api {
        Api::Chat => &[
            ("model", Value::String("m".into())),
            ("messages", Value::Array(vec![])),
        ],
        Api::Completion => &[
            ("model", Value::String("m".into())),
            ("prompt", Value::String(String::new())),
        ],
    };
    for (key, value) in &object {
        let mut probe: Map<String, Value> = skeleton
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        probe.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(probe)) {
            return Err(ApiError::invalid(format!(
                "Invalid type for '{key}': {e}. Send it as {}.",
                expected(key)
            ))
            .param(key));
        }
    }
    Err(ApiError::invalid(format!(
        "Invalid request: {message}. See {} for a minimal request.",
        example(api)
    )))
}

/// What a field should look like, for error messages.
fn expected(field: &str) -> &'static str {
    match field {
        "model" => "a string naming the served model",
        "messages" => {
            r#"an array of messages such as [{"role": "user", "content": "Hi"}] (content: a string or an array of {"type": "text", "text": ...} parts)"#
        }
        "prompt" => {
            "a string, an array of one string, an array of token ids, or an array of one array of token ids"
        }
        "max_tokens" | "max_completion_tokens" | "n" | "best_of" | "top_logprobs" => {
            "a positive integer"
        }
        "temperature" | "top_p" | "frequency_penalty" | "presence_penalty" => "a number",
        "seed" => "an integer",
        "stop" => "a string or an array of up to 4 strings",
        "stream" | "echo" | "ignore_eos" => "true or false",
        "logprobs" => "true or false (chat) or an integer (completions)",
        "stream_options" => r#"an object such as {"include_usage": true}"#,
        _ => "the type the OpenAI API reference gives",
    }
}

/// Checks that `model` names the served model (`NAME` or `local:NAME`).
pub(crate) fn check_model(model: &str, served: &str) -> Result<(), ApiError> {
    if model == served || model.strip_prefix(LOCAL_PREFIX) == Some(served) {
        return Ok(());
    }
    Err(ApiError::model_not_found(model, served))
}

/// Sampling and stop settings common to both endpoints.
struct Common<'a> {
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<u32>,
    stop: Option<&'a Stop>,
    seed: Option<i64>,
    stream: Option<bool>,
    has_stream_options: bool,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    ignore_eos: Option<bool>,
    min_tokens: Option<u32>,
}

struct Checked {
    temperature: f64,
    top_p: f64,
    stop: Vec<String>,
    seed: u64,
}

fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(format!(
        "'{param}' is not supported by the local model server: {what}."
    ))
    .code("unsupported_parameter")
    .param(param)
}

fn check_common(c: &Common<'_>, seed: u64) -> Result<Checked, ApiError> {
    match c.n {
        Some(0) => {
            return Err(ApiError::invalid(
                "Invalid 'n': it must be at least 1; leave it out for one choice.",
            )
            .param("n"));
        }
        Some(n) if n > 1 => {
            return Err(unsupported(
                "n",
                &format!(
                    "it generates one choice per request (got n={n}); send n=1 or leave it out, and make {n} requests instead"
                ),
            ));
        }
        _ => {}
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(format!(
            "Invalid 'temperature': {temperature} is outside [0, 2]; use 0 for greedy decoding, 1 (the default) to sample."
        ))
        .param("temperature"));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if top_p <= 0.0 || top_p > 1.0 {
        return Err(ApiError::invalid(format!(
            "Invalid 'top_p': {top_p} is outside (0, 1]; use a value such as 0.9, or 1 (the default) for the whole distribution."
        ))
        .param("top_p"));
    }
    for (param, value) in [
        ("frequency_penalty", c.frequency_penalty),
        ("presence_penalty", c.presence_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(unsupported(
                param,
                "penalties are not implemented; leave it out or send 0",
            ));
        }
    }
    if c.ignore_eos == Some(true) {
        return Err(unsupported(
            "ignore_eos",
            "the model always stops at its end-of-turn token; leave it out",
        ));
    }
    if c.min_tokens.is_some_and(|m| m > 0) {
        return Err(unsupported(
            "min_tokens",
            "the model always stops at its end-of-turn token; leave it out",
        ));
    }
    if c.has_stream_options && c.stream != Some(true) {
        return Err(ApiError::invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is true; add \"stream\": true or remove 'stream_options'.",
        )
        .param("stream_options"));
    }
    let stop: Vec<String> = match c.stop {
        None => Vec::new(),
        Some(stop) => {
            let sequences = stop.sequences();
            if sequences.len() > MAX_STOPS {
                return Err(ApiError::invalid(format!(
                    "Invalid 'stop': {} sequences given, at most {MAX_STOPS} are allowed.",
                    sequences.len()
                ))
                .param("stop"));
            }
            sequences
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }
    };
    Ok(Checked {
        temperature,
        top_p,
        stop,
        // Negative seeds are valid int64s; their bits are as good a seed as any.
        seed: c.seed.map_or(seed, |s| s as u64),
    })
}

fn parse_chat(
    req: ChatCompletionRequest,
    prompter: &Prompter,
    seed: u64,
) -> Result<Parsed, ApiError> {
    check_model(&req.model, prompter.name())?;
    if req.logprobs == Some(true) {
        return Err(unsupported(
            "logprobs",
            "log probabilities are not returned; leave it out or send false",
        ));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported(
            "top_logprobs",
            "log probabilities are not returned; leave it out",
        ));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported(
            "tools",
            "the model cannot call tools; leave 'tools' out",
        ));
    }
    if req.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(unsupported(
            "functions",
            "the model cannot call functions; leave 'functions' out",
        ));
    }
    if let Some(choice) = &req.tool_choice
        && choice.as_str() != Some("none")
        && choice.as_str() != Some("auto")
    {
        return Err(unsupported(
            "tool_choice",
            "the model cannot call tools; leave 'tool_choice' out",
        ));
    }
    if let Some(call) = &req.function_call
        && call.as_str() != Some("none")
        && call.as_str() != Some("auto")
    {
        return Err(unsupported(
            "function_call",
            "the model cannot call functions; leave 'function_call' out",
        ));
    }
    if let Some(format) = &req.response_format {
        let kind = format.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "text" {
            return Err(unsupported(
                "response_format",
                &format!(
                    "only {{\"type\": \"text\"}} is served (got type '{kind}'); ask for JSON in the prompt instead"
                ),
            ));
        }
    }
    if req.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(unsupported(
            "logit_bias",
            "token biases are not applied; leave it out",
        ));
    }
    if req.audio.is_some()
        || req
            .modalities
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m != "text"))
    {
        return Err(unsupported(
            "modalities",
            "the model writes text only; leave 'audio' and 'modalities' out",
        ));
    }
    if req.prediction.is_some() {
        return Err(unsupported(
            "prediction",
            "predicted outputs are not used; leave it out",
        ));
    }
    let checked = check_common(
        &Common {
            temperature: req.temperature,
            top_p: req.top_p,
            n: req.n,
            stop: req.stop.as_ref(),
            seed: req.seed,
            stream: req.stream,
            has_stream_options: req.stream_options.is_some(),
            frequency_penalty: req.frequency_penalty,
            presence_penalty: req.presence_penalty,
            ignore_eos: req.ignore_eos,
            min_tokens: req.min_tokens,
        },
        seed,
    )?;
    let cap = req.output_cap();
    if cap == Some(0) {
        let param = if req.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(
            ApiError::invalid(format!("Invalid '{param}': it must be at least 1.")).param(param),
        );
    }
    let messages = chat_messages(&req)?;
    let prompt = prompter.chat_prompt(&messages).map_err(|e| {
        ApiError::invalid(format!(
            "The messages cannot be formatted for this model: {e}"
        ))
        .param("messages")
    })?;
    let context = prompter.context_length();
    // OpenAI's default for chat: as much as the context has left.
    let max_tokens = match cap {
        Some(cap) => cap,
        None => u32::try_from(context.saturating_sub(prompt.len()))
            .unwrap_or(u32::MAX)
            .max(1),
    };
    check_fits(prompter, prompt.len(), max_tokens, "messages")?;
    Ok(Parsed {
        stream: req.is_stream(),
        include_usage: req.include_usage(),
        prompt,
        params: GenParams {
            max_tokens,
            stop: checked.stop,
            temperature: checked.temperature,
            top_p: checked.top_p,
            seed: checked.seed,
        },
    })
}

fn chat_messages(req: &ChatCompletionRequest) -> Result<Vec<Message>, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "'messages' is empty: send at least one message, such as {\"role\": \"user\", \"content\": \"Hi\"}.",
        )
        .param("messages"));
    }
    let mut out = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            // Chat templates of open models know `system`; OpenAI treats `developer` as the
            // system message of models that predate it.
            "developer" | "system" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" | "function" => {
                return Err(unsupported(
                    &format!("messages[{i}].role"),
                    &format!(
                        "'{}' messages answer tool calls, which the model cannot make",
                        m.role
                    ),
                ));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid 'messages[{i}].role': '{other}'; use system, developer, user or assistant."
                ))
                .param(format!("messages[{i}].role")));
            }
        };
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported(
                &format!("messages[{i}].tool_calls"),
                "the model cannot call tools",
            ));
        }
        if let Some(MessageContent::Parts(parts)) = &m.content
            && let Some(part) = parts.iter().find(|p| p.r#type != "text")
        {
            return Err(unsupported(
                &format!("messages[{i}].content"),
                &format!(
                    "the model reads text only (got a '{}' part); send text parts or a string",
                    part.r#type
                ),
            ));
        }
        if m.content.is_none() && role != "assistant" {
            return Err(ApiError::invalid(format!(
                "Missing 'messages[{i}].content': a {role} message needs its text."
            ))
            .param(format!("messages[{i}].content")));
        }
        out.push(Message::new(role, m.text()));
    }
    Ok(out)
}

fn parse_completion(
    req: CompletionRequest,
    prompter: &Prompter,
    seed: u64,
) -> Result<Parsed, ApiError> {
    check_model(&req.model, prompter.name())?;
    if req.echo == Some(true) {
        return Err(unsupported(
            "echo",
            "the prompt is not echoed; prepend it yourself",
        ));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported(
            "suffix",
            "insert mode is not available; leave 'suffix' out",
        ));
    }
    if req.logprobs.is_some() {
        return Err(unsupported(
            "logprobs",
            "log probabilities are not returned; leave it out",
        ));
    }
    match req.best_of {
        Some(0) => {
            return Err(
                ApiError::invalid("Invalid 'best_of': it must be at least 1.").param("best_of"),
            );
        }
        Some(b) if b > 1 => {
            return Err(unsupported(
                "best_of",
                &format!(
                    "one candidate is generated per request (got best_of={b}); send 1 or leave it out"
                ),
            ));
        }
        _ => {}
    }
    if req
        .extra
        .get("logit_bias")
        .and_then(Value::as_object)
        .is_some_and(|b| !b.is_empty())
    {
        return Err(unsupported(
            "logit_bias",
            "token biases are not applied; leave it out",
        ));
    }
    let number = |key: &str| req.extra.get(key).and_then(Value::as_f64);
    let checked = check_common(
        &Common {
            temperature: req.temperature,
            top_p: req.top_p,
            n: req.n,
            stop: req.stop.as_ref(),
            seed: req.seed,
            stream: req.stream,
            has_stream_options: req.stream_options.is_some(),
            frequency_penalty: number("frequency_penalty"),
            presence_penalty: number("presence_penalty"),
            ignore_eos: req.ignore_eos,
            min_tokens: req.min_tokens,
        },
        seed,
    )?;
    if req.max_tokens == Some(0) {
        return Err(
            ApiError::invalid("Invalid 'max_tokens': it must be at least 1.").param("max_tokens"),
        );
    }
    let max_tokens = req.max_tokens.unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS);
    let prompt = completion_prompt(&req.prompt, prompter)?;
    check_fits(prompter, prompt.len(), max_tokens, "prompt")?;
    Ok(Parsed {
        stream: req.is_stream(),
        include_usage: req.include_usage(),
        prompt,
        params: GenParams {
            max_tokens,
            stop: checked.stop,
            temperature: checked.temperature,
            top_p: checked.top_p,
            seed: checked.seed,
        },
    })
}

fn completion_prompt(prompt: &Prompt, prompter: &Prompter) -> Result<Vec<u32>, ApiError> {
    if prompt.len() != 1 {
        return Err(ApiError::invalid(format!(
            "Invalid 'prompt': {} prompts given; the local model server takes one prompt per request (a string, or an array of one string or of one token-id array). Send one request per prompt.",
            prompt.len()
        ))
        .code("unsupported_parameter")
        .param("prompt"));
    }
    let ids = match prompt {
        Prompt::Text(text) => prompter.text_prompt(text),
        Prompt::Texts(texts) => prompter.text_prompt(texts.first().map_or("", String::as_str)),
        Prompt::Tokens(ids) => ids.clone(),
        Prompt::TokenBatches(batches) => batches.first().cloned().unwrap_or_default(),
    };
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'prompt': it is empty; send at least one token of text.",
        )
        .param("prompt"));
    }
    let vocab = prompter.tokenizer().len();
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::invalid(format!(
            "Invalid 'prompt': token id {bad} is outside the model's vocabulary (ids 0 to {}).",
            vocab.saturating_sub(1)
        ))
        .param("prompt"));
    }
    Ok(ids)
}

fn check_fits(
    prompter: &Prompter,
    prompt_len: usize,
    max_tokens: u32,
    param: &str,
) -> Result<(), ApiError> {
    let context = prompter.context_length();
    let total = prompt_len as u64 + u64::from(max_tokens);
    if total > context as u64 {
        return Err(ApiError::invalid(format!(
            "This model's maximum context length is {context} tokens. However, you requested {total} tokens ({prompt_len} in the {param}, {max_tokens} in the completion). Please reduce the length of the {param} or max_tokens."
        ))
        .code("context_length_exceeded")
        .param(param));
    }
    // Anything else the engine refuses (an empty prompt) is a plain bad request.
    prompter
        .check_fits(prompt_len, max_tokens)
        .map_err(|e| ApiError::invalid(format!("Invalid '{param}': {e}.")).param(param))
}
