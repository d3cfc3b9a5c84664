// Typed errors: a caller tells a refused token from a dropped network from a bad request.

/** Base class: every error this package throws has a machine-readable `code`. */
export class GatewayError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The gateway refused the connection before the websocket opened (HTTP status). */
export class ConnectError extends GatewayError {
  readonly status: number | null;
  constructor(status: number | null, message: string) {
    super(status === 401 ? "unauthorized" : status === 403 ? "forbidden" : "connect_failed",
          message);
    this.status = status;
  }
}

/** The gateway answered a request with an error chunk (`bad_request`, `forbidden`, ...). */
export class RequestError extends GatewayError {
  readonly threadId: string | null;
  readonly callId: string | null;
  constructor(code: string, message: string, threadId: string | null, callId: string | null) {
    super(code, message);
    this.threadId = threadId;
    this.callId = callId;
  }
}

/** The connection is gone for good: closed by the gateway, by us, or not resumable in time. */
export class DisconnectedError extends GatewayError {
  constructor(message: string) {
    super("disconnected", message);
  }
}

/** An HTTP call (upload, download) failed: the status and the gateway's error code. */
export class HttpError extends GatewayError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(code, `${status} ${code}: ${message}`);
    this.status = status;
  }
}
