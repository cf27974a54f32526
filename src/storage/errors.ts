/**
 * Every condition the store or the handlers can report is one class that knows
 * its HTTP status, its stable code and its extra headers; `error-response.ts`
 * turns any of them into a response in one place.
 */
export class NanoCdnError extends Error {
  readonly status: number = 500;
  readonly code: string = "internal_error";
  readonly headers: Record<string, string> = {};

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidPathError extends NanoCdnError {
  override readonly status = 400;
  override readonly code = "invalid_path";
}

export class ConflictError extends NanoCdnError {
  override readonly status = 409;
  override readonly code: string = "exists";
}

/** No file can have the name: a folder of that name holds files, or a file stands where one of its folders must be. */
export class NameBlockedError extends ConflictError {
  override readonly code = "name_blocked";
}

export class NotFoundError extends NanoCdnError {
  override readonly status = 404;
  override readonly code = "not_found";
}

export class PayloadTooLargeError extends NanoCdnError {
  override readonly status = 413;
  override readonly code = "too_large";
}

/** The body ended before its declared length, or the client went away. */
export class IncompleteBodyError extends NanoCdnError {
  override readonly status = 400;
  override readonly code = "incomplete_body";
}

/**
 * The store cannot take writes or serve reads (read-only disk, disk full, I/O
 * error). `bodyUntouched` tells the caller that no byte of the upload was
 * consumed, so the upload may still be handed to another node.
 */
export class StoreUnavailableError extends NanoCdnError {
  override readonly status: number = 503;
  override readonly code: string = "store_unavailable";
  readonly bodyUntouched: boolean;

  constructor(message: string, options?: { cause?: unknown; bodyUntouched?: boolean }) {
    super(message, options);
    this.bodyUntouched = options?.bodyUntouched ?? false;
  }
}

export class InsufficientStorageError extends StoreUnavailableError {
  override readonly status = 507;
  override readonly code = "insufficient_storage";
}
