//! The MCP tools: per-user notes kept in memory. The user is the verified access token's `sub`,
//! read from the HTTP request each tool call arrived with (never from the MCP session, which is
//! not an authentication).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use consentry_resource::Caller;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const READ: &str = "notes:read";
pub const WRITE: &str = "notes:write";

/// Limits that keep one user from filling the server's memory.
const MAX_NOTE_CHARS: usize = 10_000;
const MAX_NOTES_PER_USER: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: u64,
    pub text: String,
}

/// Every user's notes.
#[derive(Debug, Default, Clone)]
pub struct Store {
    inner: Arc<Mutex<HashMap<String, Vec<Note>>>>,
}

impl Store {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Vec<Note>>) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    pub fn list(&self, user: &str) -> Vec<Note> {
        self.with(|m| m.get(user).cloned().unwrap_or_default())
    }

    pub fn add(&self, user: &str, text: String) -> Result<Note, String> {
        if text.trim().is_empty() {
            return Err("text must not be empty".into());
        }
        if text.chars().count() > MAX_NOTE_CHARS {
            return Err(format!("text is longer than {MAX_NOTE_CHARS} characters"));
        }
        self.with(|m| {
            let notes = m.entry(user.to_owned()).or_default();
            if notes.len() >= MAX_NOTES_PER_USER {
                return Err(format!("you already have {MAX_NOTES_PER_USER} notes"));
            }
            let note = Note {
                id: notes.last().map_or(1, |n| n.id + 1),
                text,
            };
            notes.push(note.clone());
            Ok(note)
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddNote {
    /// The note's text.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct NotesServer {
    store: Store,
    tool_router: ToolRouter<Self>,
}

/// The verified caller of this tool call, with `scope`; a tool error otherwise. The HTTP layers
/// already refused callers without the scope (403, so that clients step up): this is the same
/// rule again, where the data is touched.
fn caller(parts: &http::request::Parts, scope: &str) -> Result<Caller, CallToolResult> {
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return Err(CallToolResult::error(vec![ContentBlock::text(
            "this MCP server is misconfigured: the tool call carries no verified caller",
        )]));
    };
    if !caller.has_scope(scope) {
        return Err(CallToolResult::error(vec![ContentBlock::text(format!(
            "this tool needs scope '{scope}'; authorize again with it"
        ))]));
    }
    Ok(caller.clone())
}

#[tool_router(router = tool_router)]
impl NotesServer {
    pub fn new(store: Store) -> Self {
        NotesServer {
            store,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "List your notes (needs scope notes:read).")]
    async fn list_notes(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match caller(&parts, READ) {
            Ok(c) => c,
            Err(refused) => return Ok(refused),
        };
        let notes = self.store.list(caller.user_id());
        Ok(CallToolResult::structured(
            json!({"user": caller.user_id(), "notes": notes}),
        ))
    }

    #[tool(description = "Add a note (needs scope notes:write).")]
    async fn add_note(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(AddNote { text }): Parameters<AddNote>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match caller(&parts, WRITE) {
            Ok(c) => c,
            Err(refused) => return Ok(refused),
        };
        match self.store.add(caller.user_id(), text) {
            Ok(note) => Ok(CallToolResult::structured(
                json!({"user": caller.user_id(), "note": note}),
            )),
            Err(why) => Ok(CallToolResult::error(vec![ContentBlock::text(why)])),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "consentry-example-notes",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Per-user notes. list_notes needs scope notes:read, add_note needs notes:write.",
            )
    }
}
