//! The chat template a GGUF file carries (`tokenizer.chat_template`, a Jinja template as in
//! Hugging Face's `tokenizer_config.json`), rendered with minijinja: `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token` are defined, and `raise_exception`
//! reports the template's own error. A model without a template (a base model such as Gemma 3
//! 270M) takes chat messages as plain text, one message per paragraph.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use crate::LocalError;

/// One chat message, as the template sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's chat template, ready to render.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Option<Environment<'static>>,
    bos: String,
    eos: String,
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles `source` (the GGUF's `tokenizer.chat_template`; `None` for a base model).
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self, LocalError> {
        let env = match source {
            None => None,
            Some(src) => {
                let mut env = Environment::new();
                env.add_function("raise_exception", raise_exception);
                env.add_template_owned("chat", src.to_owned()).map_err(|e| {
                    LocalError::Tokenizer(format!(
                        "the model's chat template does not compile: {e}; use /v1/completions with a prompt you format yourself"
                    ))
                })?;
                Some(env)
            }
        };
        Ok(ChatTemplate {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// Whether the model has a chat template (an instruction-tuned model) or not (a base model).
    pub fn is_chat(&self) -> bool {
        self.env.is_some()
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener.
    pub fn render(&self, messages: &[Message]) -> Result<String, LocalError> {
        let Some(env) = &self.env else {
            // No template: the messages' text, one paragraph each, as a base model would read
            // a document.
            let parts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            return Ok(parts.join("\n\n"));
        };
        let template = env
            .get_template("chat")
            .map_err(|e| LocalError::Tokenizer(format!("chat template: {e}")))?;
        template
            .render(context! {
                messages => messages.iter().map(|m| minijinja::Value::from_pairs([
                    ("role", minijinja::Value::from(m.role.as_str())),
                    ("content", minijinja::Value::from(m.content.as_str())),
                ])).collect::<Vec<_>>(),
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| {
                LocalError::Invalid(format!(
                    "the model's chat template refused the messages: {e}"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_chatml() {
        let t = ChatTemplate::new(Some(CHATML), "<|im_start|>", "<|im_end|>").expect("compiles");
        let out = t.render(&[Message::new("user", "Hi")]).expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(&[
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
            ])
            .expect("renders");
        assert!(out.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
    }

    #[test]
    fn base_model_joins_messages() {
        let t = ChatTemplate::new(None, "", "").expect("no template");
        assert!(!t.is_chat());
        let out = t
            .render(&[Message::new("system", "A."), Message::new("user", "B")])
            .expect("renders");
        assert_eq!(out, "A.\n\nB");
    }

    #[test]
    fn template_errors_are_reported() {
        assert!(ChatTemplate::new(Some("{% for %}"), "", "").is_err());
        let t = ChatTemplate::new(
            Some("{{ raise_exception('roles must alternate') }}"),
            "",
            "",
        )
        .expect("compiles");
        let e = t.render(&[Message::new("user", "x")]).expect_err("raises");
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }
}
