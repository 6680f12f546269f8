// The HTTP client: every call carries the session's token, and every failure becomes an
// ApiError holding the API's own words (detail, code, request id), shown as they are.
import { currentSession, endSession } from "./session";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  /** The error body's other fields (e.g. `tenant` of sso_required). */
  readonly fields: Record<string, unknown>;

  constructor(status: number, detail: string, code: string, requestId: string | null, fields: Record<string, unknown> = {}) {
    super(detail);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.fields = fields;
  }
}

interface ErrorBody {
  detail?: unknown;
  code?: unknown;
  request_id?: unknown;
  errors?: { loc?: unknown[]; msg?: string }[];
}

function describe(body: ErrorBody, status: number): string {
  if (typeof body.detail === "string") {
    const fields = (body.errors ?? [])
      .map((e) => `${(e.loc ?? []).join(".")}: ${e.msg ?? ""}`)
      .filter((line) => line.length > 2);
    return fields.length ? `${body.detail} (${fields.join("; ")})` : body.detail;
  }
  return `The server answered ${status} without an explanation.`;
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let body: ErrorBody = {};
  try {
    body = (await response.json()) as ErrorBody;
  } catch {
    // Not JSON (a proxy's page): the status line is all there is.
  }
  const code = typeof body.code === "string" ? body.code : `http_${response.status}`;
  const requestId = typeof body.request_id === "string" ? body.request_id : null;
  return new ApiError(response.status, describe(body, response.status), code, requestId, body as Record<string, unknown>);
}

export function authHeaders(): Record<string, string> {
  const session = currentSession();
  const headers: Record<string, string> = {};
  if (session) {
    headers.Authorization = `Bearer ${session.token}`;
    if (session.actingTenant) headers["X-Tenant-ID"] = session.actingTenant.id;
  }
  return headers;
}

/** The API's error; a 401 also ends the session, so the login page says why. */
async function failure(response: Response): Promise<ApiError> {
  const error = await errorFrom(response);
  if (response.status === 401 && currentSession()) {
    endSession(/log in again/i.test(error.message) ? error.message : `${error.message} Log in again.`);
  }
  return error;
}

export async function send(method: string, path: string, body?: unknown): Promise<Response> {
  const headers = authHeaders();
  let payload: BodyInit | undefined;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that mtai is running.", "offline", null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await send(method, path, body);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const get = <T>(path: string) => api<T>("GET", path);

/** A POST of the sign-in flows (login, invitations, single sign-on): its 401 is the answer to
 * show, not the end of the session. */
export async function authPost<T>(path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const init: RequestInit =
    body === undefined
      ? { method: "POST", headers }
      : { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that mtai is running.", "offline", null);
  }
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as T;
}

/** Multipart upload with progress (fetch cannot report upload progress; XHR can). */
export function upload<T>(path: string, form: FormData, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onerror = () =>
      reject(new ApiError(0, "The upload was interrupted: the server cannot be reached.", "offline", null));
    xhr.onload = () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { "Content-Type": "application/json" },
      });
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(JSON.parse(xhr.responseText) as T);
      } else {
        void failure(response).then(reject);
      }
    };
    xhr.send(form);
  });
}

export interface ServerEvent {
  event: string;
  data: unknown;
}

/** POST that answers with server-sent events; yields each event as it arrives. */
export async function* stream(path: string, body: unknown, signal: AbortSignal): AsyncGenerator<ServerEvent> {
  const headers = { ...authHeaders(), "Content-Type": "application/json", Accept: "text/event-stream" };
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), signal });
  if (!response.ok || !response.body) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) as unknown };
    }
  }
}
