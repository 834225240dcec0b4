import { request } from "node:https";

/** GETs `path` over HTTPS from 127.0.0.1:`port`, trusting only `ca`: the status and body, or the TLS error. */
export function httpsGet(port: number, path: string, ca: string): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path, ca, servername: "localhost", agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", resolve);
    req.end();
  });
}
