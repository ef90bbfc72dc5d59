// Transports: where the host listens for channels the guest dials.
export type { AcceptOptions, ChannelListener, HostTransport } from "./types.js";
export { UnixTransport, type UnixTransportOptions } from "./unix.js";
export { TcpTransport, type TcpTransportOptions } from "./tcp.js";
