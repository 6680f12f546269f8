// Chat for every user: conversations, streamed answers, model choice, answers from documents.
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { ApiError, api, get, stream } from "../api";
import { Dialog, ErrorMessage, useAction, useLoad } from "../components/common";
import { Link } from "../router";
import type { ChatMessage, ChatModel, Citation, Collection, Conversation, ConversationDetail, Page, Passage } from "../types";

interface StartEvent {
  conversation_id: string;
  citations: Citation[];
}

function PassageView({ citation, question }: { citation: Citation; question: string }) {
  const passage = useLoad(() => get<Passage>(`/api/v1/rag/chunks/${citation.chunk_id}`), [citation.chunk_id]);
  if (passage.error) return <ErrorMessage error={passage.error} />;
  if (!passage.data) return <p aria-busy="true">Loading the passage…</p>;
  const p = passage.data;
  return (
    <article className="passage" data-testid="passage">
      <p className="muted">
        {p.title}
        {p.heading ? ` › ${p.heading}` : ""}
        {p.page ? ` · page ${p.page}` : ""} · passage {p.ordinal + 1}
      </p>
      <blockquote>{p.text}</blockquote>
      {question && (
        <Link to={`/search?${new URLSearchParams({ q: question.slice(0, 2000), chunk: citation.chunk_id }).toString()}`}>
          Why this passage? See how the search ranked it
        </Link>
      )}
    </article>
  );
}

function Citations({ citations, onOpen }: { citations: Citation[]; onOpen: (c: Citation) => void }) {
  if (!citations.length) return null;
  return (
    <ol className="citations" aria-label="Sources">
      {citations.map((c) => (
        <li key={c.chunk_id}>
          <button type="button" className="citation" onClick={() => onOpen(c)}>
            [{c.number}] {c.title}
            {c.heading ? ` › ${c.heading}` : ""}
            {c.page ? ` (p. ${c.page})` : ""}
          </button>
        </li>
      ))}
    </ol>
  );
}

// The user message an answer replied to: what its sources were searched with.
function questionBefore(messages: ChatMessage[], index: number): string {
  for (let i = index - 1; i >= 0; i -= 1) if (messages[i].role === "user") return messages[i].content;
  return "";
}

function ConversationList({ items, current, onOpen, onDelete }: {
  items: Conversation[];
  current: string | null;
  onOpen: (id: string | null) => void;
  onDelete: (id: string) => void;
}) {
  return (
    <nav className="conversations" aria-label="Conversations">
      <button type="button" className="primary" onClick={() => onOpen(null)}>
        New chat
      </button>
      <ul>
        {items.map((c) => (
          <li key={c.id}>
            <button type="button" className="conversation" aria-current={c.id === current ? "true" : undefined} onClick={() => onOpen(c.id)}>
              {c.title || "Untitled"}
            </button>
            <button type="button" className="link" aria-label={`Delete conversation ${c.title}`} onClick={() => onDelete(c.id)}>
              ×
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

export function Chat() {
  const conversations = useLoad(() => get<Page<Conversation>>("/api/v1/chat/conversations?limit=100"), []);
  const models = useLoad(() => get<ChatModel[]>("/api/v1/chat/models"), []);
  const collections = useLoad(() => get<Page<Collection>>("/api/v1/rag/collections?limit=200"), []);
  const [current, setCurrent] = useState<string | null>(null);
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [model, setModel] = useState("");
  const [useRag, setUseRag] = useState(false);
  const [picked, setPicked] = useState<string[]>([]);
  const [text, setText] = useState("");
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [opened, setOpened] = useState<{ citation: Citation; question: string } | null>(null);
  const abort = useRef<AbortController | null>(null);
  const end = useRef<HTMLDivElement>(null);
  const action = useAction();

  useEffect(() => {
    // A block body: newer browsers return a Promise from scrollIntoView, not a cleanup.
    void end.current?.scrollIntoView({ block: "end" });
  }, [messages]);

  const open = (id: string | null) =>
    void action.run(async () => {
      abort.current?.abort();
      setError(null);
      setCurrent(id);
      setMessages(id ? (await get<ConversationDetail>(`/api/v1/chat/conversations/${id}`)).messages : []);
    });

  const remove = (id: string) => {
    if (!window.confirm("Delete this conversation?")) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/chat/conversations/${id}`);
      if (id === current) open(null);
      conversations.reload();
    });
  };

  const send = async () => {
    const message = text.trim();
    if (!message || streaming) return;
    setText("");
    setError(null);
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    setMessages((m) => [...m, { role: "user", content: message, citations: [] }, { role: "assistant", content: "", citations: [] }]);
    const updateLast = (change: (last: ChatMessage) => ChatMessage) =>
      setMessages((m) => [...m.slice(0, -1), change(m[m.length - 1])]);
    const body = {
      message,
      stream: true,
      conversation_id: current,
      ...(model ? { model } : {}),
      ...(useRag ? { use_rag: true, ...(picked.length ? { collection_ids: picked } : {}) } : {}),
    };
    try {
      for await (const { event, data } of stream("/api/v1/chat/", body, controller.signal)) {
        if (event === "start") {
          const start = data as StartEvent;
          setCurrent(start.conversation_id);
          updateLast((last) => ({ ...last, citations: start.citations }));
        } else if (event === "delta") {
          const delta = (data as { text: string }).text;
          updateLast((last) => ({ ...last, content: last.content + delta }));
        } else if (event === "error") {
          const e = data as { detail: string; code: string; request_id: string | null };
          throw new ApiError(502, e.detail, e.code, e.request_id);
        }
      }
      conversations.reload();
    } catch (err) {
      if (!controller.signal.aborted) setError(err);
      // Nothing streamed: take the empty answer away, and give the message back to edit.
      setMessages((m) => (m[m.length - 1]?.content ? m : m.slice(0, -1)));
      if (!controller.signal.aborted) setText(message);
    } finally {
      setStreaming(false);
    }
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void send();
  };
  const onKey = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void send();
    }
  };

  return (
    <div className="chat">
      <ConversationList items={conversations.data?.items ?? []} current={current} onOpen={open} onDelete={remove} />
      <section className="chat-main" aria-label="Conversation">
        <h1 className="visually-hidden">Chat</h1>
        <ErrorMessage error={conversations.error ?? models.error ?? action.error} />
        <div className="messages" aria-live="polite">
          {messages.length === 0 && <p className="muted">Ask anything. Tick “Answer from documents” to use your knowledge bases.</p>}
          {messages.map((m, i) => (
            <div key={i} className={`message ${m.role}`} data-role={m.role}>
              <div className="bubble">{m.content || (streaming && i === messages.length - 1 ? "…" : "")}</div>
              <Citations citations={m.citations} onOpen={(citation) => setOpened({ citation, question: questionBefore(messages, i) })} />
            </div>
          ))}
          <div ref={end} />
        </div>
        <ErrorMessage error={error} />
        <form className="composer" onSubmit={submit}>
          <div className="composer-options">
            <label>
              Model
              <select value={model} onChange={(e) => setModel(e.target.value)}>
                <option value="">Default{models.data?.find((m) => m.is_default) ? ` (${models.data.find((m) => m.is_default)?.name})` : ""}</option>
                {models.data?.map((m) => (
                  <option key={m.name} value={m.name}>
                    {m.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="inline">
              <input type="checkbox" checked={useRag} onChange={(e) => setUseRag(e.target.checked)} />
              Answer from documents
            </label>
            {useRag && (
              <fieldset className="inline">
                <legend>Knowledge bases (none ticked: all)</legend>
                {collections.data?.items.map((c) => (
                  <label key={c.id} className="inline">
                    <input
                      type="checkbox"
                      checked={picked.includes(c.id)}
                      onChange={(e) => setPicked(e.target.checked ? [...picked, c.id] : picked.filter((id) => id !== c.id))}
                    />
                    {c.name}
                  </label>
                ))}
              </fieldset>
            )}
          </div>
          <label className="visually-hidden" htmlFor="message">
            Message
          </label>
          <textarea id="message" rows={3} value={text} placeholder="Message (Enter sends, Shift+Enter for a new line)" onChange={(e) => setText(e.target.value)} onKeyDown={onKey} />
          {streaming ? (
            <button type="button" onClick={() => abort.current?.abort()}>
              Stop
            </button>
          ) : (
            <button type="submit" className="primary" disabled={!text.trim()}>
              Send
            </button>
          )}
        </form>
      </section>
      <Dialog title={opened ? `Source [${opened.citation.number}]` : "Source"} open={!!opened} onClose={() => setOpened(null)}>
        {opened && <PassageView citation={opened.citation} question={opened.question} />}
      </Dialog>
    </div>
  );
}
