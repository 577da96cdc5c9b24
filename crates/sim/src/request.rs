//! Parsing and validating the body of a simulated API request into what the handler
//! needs ([`Parsed`]): the model, stream options, output cap, the input token count, and
//! the hash that seeds the response. Bad input becomes an [`ApiError`] naming the problem.

use crate::plan::Asked;
use crate::server::{Api, ApiError};
use crate::text::fnv1a;

/// What the handler needs from a parsed request.
pub(crate) struct Parsed {
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) obfuscation: bool,
    pub(crate) asked: Asked,
    pub(crate) input_tokens: u64,
    pub(crate) hash: u64,
}

fn parse_error(e: &serde_json::Error, what: &str) -> ApiError {
    let problem = if e.is_syntax() || e.is_eof() {
        format!("the body is not valid JSON ({e})")
    } else {
        format!("the JSON does not match the {what} request ({e})")
    };
    ApiError::invalid(format!(
        "We could not parse your request: {problem}. Send a JSON object as documented for {what}."
    ))
}

pub(crate) fn parse(api: Api, bytes: &[u8]) -> Result<Parsed, ApiError> {
    match api {
        Api::Chat => {
            let req: protocol::openai::ChatCompletionRequest = serde_json::from_slice(bytes)
                .map_err(|e| parse_error(&e, "POST /v1/chat/completions"))?;
            if req.messages.is_empty() {
                return Err(ApiError::invalid(
                    "messages: [] is too short; send at least one message",
                )
                .param("messages"));
            }
            if req.n.unwrap_or(1) != 1 {
                return Err(ApiError::invalid(
                    "n: the simulator generates one choice per request; send n = 1 or leave it out",
                )
                .param("n"));
            }
            let hash = fnv1a(
                &serde_json::to_vec(&(&req.model, &req.messages, &req.seed, &req.tools))
                    .unwrap_or_default(),
            );
            Ok(Parsed {
                stream: req.is_stream(),
                include_usage: req.include_usage(),
                obfuscation: req
                    .stream_options
                    .as_ref()
                    .and_then(|o| o.include_obfuscation)
                    .unwrap_or(true),
                asked: Asked {
                    cap: req.output_cap(),
                    ignore_eos: req.ignore_eos.unwrap_or(false),
                    min_tokens: req.min_tokens,
                },
                input_tokens: protocol::tokens::count_chat_input(&req),
                hash,
                model: req.model,
            })
        }
        Api::Completion => {
            let req: protocol::openai::CompletionRequest = serde_json::from_slice(bytes)
                .map_err(|e| parse_error(&e, "POST /v1/completions"))?;
            if req.n.unwrap_or(1) != 1 {
                return Err(ApiError::invalid(
                    "n: the simulator generates one choice per request; send n = 1 or leave it out",
                )
                .param("n"));
            }
            let hash = fnv1a(
                &serde_json::to_vec(&(&req.model, &req.prompt, &req.seed)).unwrap_or_default(),
            );
            Ok(Parsed {
                stream: req.is_stream(),
                include_usage: req.include_usage(),
                obfuscation: false,
                asked: Asked {
                    // The legacy endpoint's documented default.
                    cap: Some(req.max_tokens.unwrap_or(16)),
                    ignore_eos: req.ignore_eos.unwrap_or(false),
                    min_tokens: req.min_tokens,
                },
                input_tokens: protocol::tokens::count_completion_input(&req),
                hash,
                model: req.model,
            })
        }
        Api::Messages => {
            let req: protocol::anthropic::MessagesRequest =
                serde_json::from_slice(bytes).map_err(|e| parse_error(&e, "POST /v1/messages"))?;
            let Some(max_tokens) = req.max_tokens else {
                return Err(ApiError::invalid("max_tokens: Field required"));
            };
            if req.messages.is_empty() {
                return Err(ApiError::invalid(
                    "messages: at least one message is required",
                ));
            }
            let hash = fnv1a(
                &serde_json::to_vec(&(&req.model, &req.messages, &req.system)).unwrap_or_default(),
            );
            Ok(Parsed {
                stream: req.is_stream(),
                include_usage: true,
                obfuscation: false,
                asked: Asked {
                    cap: Some(max_tokens),
                    ignore_eos: false,
                    min_tokens: None,
                },
                input_tokens: protocol::tokens::count_messages_input(&req),
                hash,
                model: req.model,
            })
        }
    }
}
