//! Routing: which upstream serves a requested model, under which name.
//!
//! In order: an alias is replaced by its target; `UPSTREAM/model` names the upstream
//! explicitly; a model listed in an upstream's `models` goes there; with a single upstream
//! every model goes to it; anything else is 404 `model_not_found`. A request goes only to
//! an upstream that speaks its dialect: there is no translation between OpenAI and
//! Anthropic formats.

use std::collections::HashMap;

use client::Api;

use crate::config::{Config, HedgeConfig, RouteConfig};
use crate::error::{DispatchError, ErrorKind};
use crate::pick::Strategy;

/// Where a model goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Index into [`Config::upstreams`] of the first target.
    pub upstream: usize,
    /// The model name the first target is sent.
    pub model: String,
    /// Every target that can serve it, in the configured order (the first is
    /// `upstream`/`model`); more than one only for a `[[routes]]` entry.
    pub targets: Vec<Target>,
    /// How to choose among the targets.
    pub strategy: Strategy,
    /// Hedging, when the route enables it.
    pub hedge: Option<HedgeConfig>,
    /// The `[[routes]]` model name, when the request matched one.
    pub named: Option<String>,
}

/// One (upstream, model) a route can send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// The model name the upstream is sent.
    pub model: String,
}

impl Route {
    fn single(upstream: usize, model: String) -> Route {
        Route {
            upstream,
            targets: vec![Target {
                upstream,
                model: model.clone(),
            }],
            model,
            strategy: Strategy::Ordered,
            hedge: None,
            named: None,
        }
    }
}

/// The routing table, built once from a [`Config`].
#[derive(Debug, Clone)]
pub struct Routes {
    names: HashMap<String, usize>,
    listed: HashMap<String, usize>,
    aliases: HashMap<String, (Option<usize>, String)>,
    single: bool,
    apis: Vec<(bool, bool)>,
    upstream_names: Vec<String>,
    routes: HashMap<String, RouteConfig>,
}

impl Routes {
    /// The table for `config`.
    pub fn new(config: &Config) -> Routes {
        let names: HashMap<String, usize> = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.clone(), i))
            .collect();
        let mut listed = HashMap::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            for m in &u.models {
                listed.insert(m.clone(), i);
            }
        }
        let aliases = config
            .aliases
            .iter()
            .map(|(a, (up, m))| {
                (
                    a.clone(),
                    (up.as_ref().and_then(|u| names.get(u).copied()), m.clone()),
                )
            })
            .collect();
        Routes {
            names,
            listed,
            aliases,
            single: config.upstreams.len() == 1,
            apis: config
                .upstreams
                .iter()
                .map(|u| (u.openai.is_some(), u.anthropic.is_some()))
                .collect(),
            upstream_names: config.upstreams.iter().map(|u| u.name.clone()).collect(),
            routes: config
                .routes
                .iter()
                .map(|r| (r.model.clone(), r.clone()))
                .collect(),
        }
    }

    /// Resolves `model` for a request in dialect `api`.
    pub fn resolve(&self, api: Api, model: &str) -> Result<Route, DispatchError> {
        let (forced, name) = match self.aliases.get(model) {
            Some((up, target)) => (*up, target.as_str()),
            None => (None, model),
        };
        if forced.is_none()
            && let Some(r) = self.routes.get(name)
        {
            let speaks = |i: usize| match api {
                Api::OpenAi => self.apis[i].0,
                Api::Anthropic => self.apis[i].1,
            };
            let targets: Vec<Target> = r
                .targets
                .iter()
                .filter(|(i, _)| speaks(*i))
                .map(|(i, m)| Target {
                    upstream: *i,
                    model: m.clone(),
                })
                .collect();
            let Some(first) = targets.first().cloned() else {
                return Err(DispatchError::new(
                    ErrorKind::NotFound,
                    format!(
                        "the route '{model}' has no target that speaks the {} API this request needs",
                        match api {
                            Api::OpenAi => "OpenAI",
                            Api::Anthropic => "Anthropic",
                        }
                    ),
                )
                .with_code("model_not_found"));
            };
            return Ok(Route {
                upstream: first.upstream,
                model: first.model,
                targets,
                strategy: r.strategy.clone(),
                hedge: r.hedge,
                named: Some(r.model.clone()),
            });
        }
        let route = if let Some(up) = forced {
            Some(Route::single(up, name.to_owned()))
        } else if let Some(&up) = self.listed.get(name) {
            Some(Route::single(up, name.to_owned()))
        } else if let Some((up, rest)) = name
            .split_once('/')
            .and_then(|(u, m)| self.names.get(u).map(|&i| (i, m)))
            .filter(|(_, m)| !m.is_empty())
        {
            Some(Route::single(up, rest.to_owned()))
        } else if self.single {
            Some(Route::single(0, name.to_owned()))
        } else {
            None
        };
        let Some(route) = route else {
            return Err(DispatchError::new(
                ErrorKind::NotFound,
                format!(
                    "the model '{model}' is not routed to any upstream: list it in an upstream's models, add an alias, or address it as UPSTREAM/MODEL (upstreams: {})",
                    self.upstream_names.join(", ")
                ),
            )
            .with_code("model_not_found"));
        };
        let (openai, anthropic) = self.apis[route.upstream];
        let speaks = match api {
            Api::OpenAi => openai,
            Api::Anthropic => anthropic,
        };
        if !speaks {
            return Err(DispatchError::new(
                ErrorKind::NotFound,
                format!(
                    "the model '{model}' is routed to upstream '{}', which does not speak the {} API this route needs (the gateway does not translate between formats)",
                    self.upstream_names[route.upstream],
                    match api {
                        Api::OpenAi => "OpenAI",
                        Api::Anthropic => "Anthropic",
                    }
                ),
            )
            .with_code("model_not_found"));
        }
        Ok(route)
    }

    /// The model names clients can ask for by name (aliases and listed models), sorted,
    /// each with its upstream.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .listed
            .iter()
            .map(|(m, &i)| (m.clone(), self.upstream_names[i].clone()))
            .chain(self.aliases.iter().filter_map(|(a, (up, m))| {
                let i = up
                    .or_else(|| self.listed.get(m).copied())
                    .or(self.single.then_some(0))?;
                Some((a.clone(), self.upstream_names[i].clone()))
            }))
            .chain(self.routes.values().filter_map(|r| {
                r.targets
                    .first()
                    .map(|(i, _)| (r.model.clone(), self.upstream_names[*i].clone()))
            }))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn routes(toml: &str) -> Routes {
        Routes::new(
            &RawConfig::from_toml(toml)
                .unwrap()
                .resolve(&|_| None)
                .unwrap(),
        )
    }

    #[test]
    fn single_upstream_takes_everything() {
        let r = routes("[upstreams.sim]\nurl = \"http://x\"\n");
        assert_eq!(
            r.resolve(Api::OpenAi, "anything").unwrap(),
            Route::single(0, "anything".into())
        );
        assert_eq!(r.resolve(Api::OpenAi, "sim/m").unwrap().model, "m");
    }

    #[test]
    fn several_upstreams_route_by_list_prefix_and_alias() {
        let r = routes(
            "[upstreams.a]\nurl = \"http://x\"\napi = \"openai\"\nmodels = [\"gpt\"]\n[upstreams.b]\nurl = \"http://y\"\napi = \"anthropic\"\nmodels = [\"claude\"]\n[aliases]\nfast = \"a/gpt-mini\"\nsmart = \"claude\"\n",
        );
        assert_eq!(r.resolve(Api::OpenAi, "gpt").unwrap().upstream, 0);
        assert_eq!(r.resolve(Api::Anthropic, "claude").unwrap().upstream, 1);
        assert_eq!(
            r.resolve(Api::OpenAi, "fast").unwrap(),
            Route::single(0, "gpt-mini".into())
        );
        assert_eq!(r.resolve(Api::Anthropic, "smart").unwrap().model, "claude");
        assert_eq!(
            r.resolve(Api::OpenAi, "b/claude").unwrap_err().code,
            Some("model_not_found")
        );
        let e = r.resolve(Api::OpenAi, "nope").unwrap_err();
        assert_eq!(e.status(), http::StatusCode::NOT_FOUND);
        assert!(e.message.contains("UPSTREAM/MODEL"), "{e}");
        assert_eq!(
            r.models(),
            vec![
                ("claude".into(), "b".into()),
                ("fast".into(), "a".into()),
                ("gpt".into(), "a".into()),
                ("smart".into(), "b".into())
            ]
        );
    }

    #[test]
    fn routes_with_several_targets() {
        let r = routes(
            "[upstreams.a]\nurl = \"http://x\"\napi = \"openai\"\n[upstreams.b]\nurl = \"http://y\"\napi = \"anthropic\"\n[upstreams.c]\nurl = \"http://z\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"a/m1\", \"b/m2\", \"c/m3\"]\n",
        );
        let route = r.resolve(Api::OpenAi, "chat").unwrap();
        // b speaks only Anthropic: it is left out of an OpenAI request's targets.
        assert_eq!(
            route.targets,
            vec![
                Target {
                    upstream: 0,
                    model: "m1".into()
                },
                Target {
                    upstream: 2,
                    model: "m3".into()
                }
            ]
        );
        assert_eq!(route.named.as_deref(), Some("chat"));
        let anthropic = r.resolve(Api::Anthropic, "chat").unwrap();
        assert_eq!((anthropic.upstream, anthropic.targets.len()), (1, 2));
        assert!(r.models().iter().any(|(m, _)| m == "chat"));
    }
}
