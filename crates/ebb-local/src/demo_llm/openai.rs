//! The OpenAI-compatible side of `ebb demo-llm`: what a completion request asks for, and the
//! answers in OpenAI's shapes, whole or as server-sent events.
//!
//! A token is a whitespace-separated word of the prompt; the output is `max_tokens` words
//! (the engine always generates that many, as vLLM with `ignore_eos`), so a load generator
//! controls both sides of a request's size exactly.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Which endpoint, and so which shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Output tokens.
    pub max_tokens: u32,
    /// Answer as server-sent events.
    pub stream: bool,
}

/// Output tokens when the request does not say (OpenAI's completions default).
const DEFAULT_MAX_TOKENS: u32 = 16;

fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

/// Reads a request body for `api`; the error says what is wrong, as a 400 would.
pub fn parse(api: Api, body: &[u8], model: &str) -> Result<Ask, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(asked) = v.get("model").and_then(Value::as_str) {
        if asked != model {
            return Err(format!(
                "The model `{asked}` does not exist (this server has `{model}`)."
            ));
        }
    }
    let prompt_tokens = match api {
        Api::Completions => match v.get("prompt") {
            Some(Value::String(s)) => words(s),
            Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).map(words).sum(),
            _ => return Err("'prompt' must be a string or a list of strings".into()),
        },
        Api::Chat => {
            let Some(messages) = v.get("messages").and_then(Value::as_array) else {
                return Err("'messages' must be a list".into());
            };
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(words)
                .sum()
        }
    };
    let max_tokens = match v
        .get("max_tokens")
        .or_else(|| v.get("max_completion_tokens"))
    {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .ok_or("'max_tokens' must be a whole number of at least 1")? as u32,
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(Ask {
        prompt_tokens: prompt_tokens.max(1),
        max_tokens,
        stream,
    })
}

/// The text of output token `index`.
pub fn token_text(index: u32) -> &'static str {
    const WORDS: [&str; 12] = [
        " ebb", " and", " flow", " of", " tokens", " from", " a", " model", " of", " an",
        " engine,", " not",
    ];
    WORDS[index as usize % WORDS.len()]
}

/// Identity of one answer: its id, creation time and model.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Which shapes.
    pub api: Api,
    /// `cmpl-N` or `chatcmpl-N`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
}

impl Answer {
    /// An answer to request `n`.
    pub fn new(api: Api, n: u64, model: &str) -> Answer {
        let prefix = match api {
            Api::Completions => "cmpl",
            Api::Chat => "chatcmpl",
        };
        Answer {
            api,
            id: format!("{prefix}-{n}"),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
        }
    }

    /// The whole answer, once every token is out.
    pub fn whole(&self, text: &str, ask: &Ask) -> Value {
        let choice = match self.api {
            Api::Completions => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": "length"})
            }
            Api::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
            }
        };
        json!({
            "id": self.id,
            "object": match self.api { Api::Completions => "text_completion", Api::Chat => "chat.completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": ask.prompt_tokens,
                "completion_tokens": ask.max_tokens,
                "total_tokens": ask.prompt_tokens + ask.max_tokens,
            },
        })
    }

    /// One server-sent event: a token's text, or the closing one with its finish reason.
    fn event(&self, text: Option<&str>, first: bool) -> Bytes {
        let finish = if text.is_none() {
            json!("length")
        } else {
            Value::Null
        };
        let choice = match self.api {
            Api::Completions => {
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
            Api::Chat => {
                let delta = match (text, first) {
                    (Some(t), true) => json!({"role": "assistant", "content": t}),
                    (Some(t), false) => json!({"content": t}),
                    (None, _) => json!({}),
                };
                json!({"index": 0, "delta": delta, "finish_reason": finish})
            }
        };
        let chunk = json!({
            "id": self.id,
            "object": match self.api { Api::Completions => "text_completion", Api::Chat => "chat.completion.chunk" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    }
}

/// A streamed answer: an event for each token as the engine emits it, then the closing event
/// and `data: [DONE]`. Dropping it (the client left) tells the engine to abort the request.
pub struct Events {
    answer: Answer,
    tokens: mpsc::UnboundedReceiver<u32>,
    sent: u32,
    done: bool,
}

impl Events {
    /// The events of `answer`, whose tokens come on `tokens`.
    pub fn new(answer: Answer, tokens: mpsc::UnboundedReceiver<u32>) -> Events {
        Events {
            answer,
            tokens,
            sent: 0,
            done: false,
        }
    }
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.tokens.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(index)) => {
                let first = self.sent == 0;
                self.sent += 1;
                let event = self.answer.event(Some(token_text(index)), first);
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
            Poll::Ready(None) => {
                self.done = true;
                let mut last = self.answer.event(None, false).to_vec();
                last.extend_from_slice(b"data: [DONE]\n\n");
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(last)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_count_words_and_max_tokens_defaults_to_16() {
        let a = parse(Api::Completions, br#"{"prompt": "one two  three"}"#, "m").unwrap();
        assert_eq!(
            a,
            Ask {
                prompt_tokens: 3,
                max_tokens: 16,
                stream: false
            }
        );
        let a = parse(
            Api::Chat,
            br#"{"model": "m", "messages": [{"role": "user", "content": "a b"}, {"role": "user", "content": "c"}], "max_completion_tokens": 5, "stream": true}"#,
            "m",
        )
        .unwrap();
        assert_eq!((a.prompt_tokens, a.max_tokens, a.stream), (3, 5, true));
        assert_eq!(
            parse(Api::Completions, br#"{"prompt": ""}"#, "m")
                .unwrap()
                .prompt_tokens,
            1,
            "an empty prompt still takes a token"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let e = parse(Api::Completions, br#"{"prompt": 3}"#, "m").unwrap_err();
        assert!(e.contains("'prompt'"), "{e}");
        let e = parse(
            Api::Completions,
            br#"{"prompt": "x", "max_tokens": 0}"#,
            "m",
        )
        .unwrap_err();
        assert!(e.contains("max_tokens"), "{e}");
        let e = parse(Api::Completions, br#"{"prompt": "x", "model": "gpt"}"#, "m").unwrap_err();
        assert!(e.contains("`gpt` does not exist"), "{e}");
        assert!(parse(Api::Chat, b"{", "m")
            .unwrap_err()
            .contains("invalid JSON"));
    }

    proptest::proptest! {
        /// Whatever a client sends, the answer is a request or a reason, never a panic; and a
        /// request always asks for at least a token each way.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
                                         words in "[a-z ]{0,64}", max in proptest::option::of(0u64..5_000_000_000)) {
            let _ = parse(Api::Completions, &body, "m");
            let _ = parse(Api::Chat, &body, "m");
            let max = max.map_or("null".to_string(), |m| m.to_string());
            let text = format!(r#"{{"prompt": "{words}", "max_tokens": {max}}}"#);
            if let Ok(ask) = parse(Api::Completions, text.as_bytes(), "m") {
                proptest::prop_assert!(ask.prompt_tokens >= 1 && ask.max_tokens >= 1);
            }
        }
    }

    #[test]
    fn events_are_openai_chunks_ending_in_done() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut events = Events::new(Answer::new(Api::Chat, 7, "m"), rx);
        tx.send(0).unwrap();
        drop(tx);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut text = String::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut events).poll_frame(&mut cx) {
            text.push_str(std::str::from_utf8(&f.into_data().unwrap()).unwrap());
        }
        let lines: Vec<&str> = text.split("\n\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first: Value = serde_json::from_str(lines[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["delta"]["content"], " ebb");
        let last: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(lines[2], "data: [DONE]");
    }
}
