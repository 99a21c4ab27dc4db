// The typed errors, and the one table that turns an HTTP answer into one of them.
//
// Callers branch on the class (what they can do about it) and on `code` (the server's reason).
// The class is chosen from the status alone, so a code the server adds later still lands in the
// right class.

/** Fields every Cairn error carries. */
export interface CairnErrorFields {
  /** The HTTP status, or null when no answer came (a refused or broken connection, a timeout). */
  status: number | null;
  /** The server's error code (`version_mismatch`, `no_leader`, ...), or the client's own. */
  code: string;
  message: string;
  /** `X-Request-Id` of the answer, when there was one: the id the nodes' logs carry. */
  requestId?: string | null;
  /** The server's error object beyond `code` and `message` (`index` of a batch op, ...). */
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class CairnError extends Error {
  // Spelled out, not taken from the constructor: a minifier renames classes.
  override readonly name: string = "CairnError";
  readonly status: number | null;
  readonly code: string;
  readonly requestId: string | null;
  readonly details: Record<string, unknown>;

  constructor(fields: CairnErrorFields) {
    super(fields.message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.status = fields.status;
    this.code = fields.code;
    this.requestId = fields.requestId ?? null;
    this.details = fields.details ?? {};
  }
}

/** 400, 408, 413: the request is malformed; sending it again fails the same way. */
export class BadRequest extends CairnError {
  override readonly name: string = "BadRequest";
}
/** 401: no credential, or one that matches no live token. */
export class Unauthorized extends CairnError {
  override readonly name: string = "Unauthorized";
}
/** 403: the token lacks the permission or the namespace; `quota_exceeded` too. */
export class Forbidden extends CairnError {
  override readonly name: string = "Forbidden";
}
/** 404. `get` answers null and `delete` false instead. */
export class NotFound extends CairnError {
  override readonly name: string = "NotFound";
}
/** 412: an `If-Match` / `If-None-Match` header did not hold. */
export class PreconditionFailed extends CairnError {
  override readonly name: string = "PreconditionFailed";
}
/** 502, 503, 507, or no endpoint answered: nothing was applied. */
export class Unavailable extends CairnError {
  override readonly name: string = "Unavailable";
}
/** 504, a 500 on a write, or a write whose connection broke after sending: it may or may not have been applied. */
export class UnknownOutcome extends CairnError {
  override readonly name: string = "UnknownOutcome";
}

/** 409: a condition did not hold, or an increment cannot apply. */
export class Conflict extends CairnError {
  override readonly name: string = "Conflict";
  /** The key's version when the server names it, else null. */
  readonly currentVersion: string | null;
  constructor(fields: CairnErrorFields) {
    super(fields);
    this.currentVersion = stringOrNull(fields.details?.["currentVersion"]);
  }
}

/** 429: over the node's rate limit (or its watchers per namespace). Nothing was done. */
export class RateLimited extends CairnError {
  override readonly name: string = "RateLimited";
  /** Seconds to wait, from `Retry-After`, or null when the answer gave none. */
  readonly retryAfter: number | null;
  constructor(fields: CairnErrorFields & { retryAfter: number | null }) {
    super(fields);
    this.retryAfter = fields.retryAfter;
  }
}

/** 410 on a watch: the node's history no longer reaches back to the resume point. List again, then watch from the listing's index. */
export class Compacted extends CairnError {
  override readonly name: string = "Compacted";
  readonly compactedIndex: string | null;
  readonly currentIndex: string | null;
  constructor(fields: CairnErrorFields) {
    super(fields);
    this.compactedIndex = stringOrNull(fields.details?.["compactedIndex"]);
    this.currentIndex = stringOrNull(fields.details?.["currentIndex"]);
  }
}

/** An answer that was not a success, as far as the error table needs it. */
export interface FailedAnswer {
  status: number;
  headers: Headers;
  body: unknown;
  /** A write: a 500 then means the outcome is unknown, not merely a server fault. */
  write: boolean;
}

/** The error table: one place that decides the class of every failed answer. */
export function errorFromAnswer(answer: FailedAnswer): CairnError {
  const { status, headers } = answer;
  const fields = wireFields(answer);
  switch (status) {
    case 400:
    case 408:
    case 413:
      return new BadRequest(fields);
    case 401:
      return new Unauthorized(fields);
    case 403:
      return new Forbidden(fields);
    case 404:
      return new NotFound(fields);
    case 409:
      return new Conflict(fields);
    case 410:
      return new Compacted(fields);
    case 412:
      return new PreconditionFailed(fields);
    case 429:
      return new RateLimited({ ...fields, retryAfter: parseRetryAfter(headers.get("retry-after")) });
    case 502:
    case 503:
    case 507:
      return new Unavailable(fields);
    case 504:
      return new UnknownOutcome(fields);
    case 500:
      // The server's own advice: a 500 on a write may have been applied, like a 504.
      return answer.write ? new UnknownOutcome(fields) : new CairnError(fields);
    default:
      return new CairnError(fields);
  }
}

function wireFields(answer: FailedAnswer): CairnErrorFields {
  const error = errorObject(answer.body);
  const { code, message, ...details } = error ?? {};
  return {
    status: answer.status,
    code: typeof code === "string" ? code : `http_${answer.status}`,
    message:
      typeof message === "string"
        ? message
        : typeof answer.body === "string" && answer.body !== ""
          ? answer.body.slice(0, 200)
          : `HTTP ${answer.status}`,
    requestId: answer.headers.get("x-request-id"),
    details,
  };
}

/** `{"error": {...}}` of the native envelope, or null for any other body (a proxy's HTML page, say). */
function errorObject(body: unknown): Record<string, unknown> | null {
  if (typeof body !== "object" || body === null) return null;
  const error = (body as { error?: unknown }).error;
  return typeof error === "object" && error !== null && !Array.isArray(error)
    ? (error as Record<string, unknown>)
    : null;
}

/** `Retry-After` in seconds: delta-seconds, or an HTTP date as the RFC also allows. */
export function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === "") return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function stringOrNull(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  return null;
}
