export { Gateway, Thread, Call, download, fileUrl } from "./client.js";
export type { CallHandlers, ConnectOptions, ExecuteOptions, UploadOptions } from "./client.js";
export { Result } from "./result.js";
export { GatewayError, ConnectError, RequestError, DisconnectedError, HttpError } from "./errors.js";
export { toBase64, fromBase64 } from "./http.js";
export type { Progress, Body } from "./http.js";
export * from "./protocol.js";
