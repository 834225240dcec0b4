import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { defineService } from "../../../src/rpc/contract.ts";
import { createClient } from "../../../src/rpc/client.ts";
import type { Transport } from "../../../src/rpc/channel.ts";

const greeter = defineService("greeter", {
  hello: { input: z.object({ name: z.string() }), output: z.object({ greeting: z.string() }) },
});

// A transport that records what it was asked, to check the client's wiring.
const asked: [string, unknown][] = [];
const transport: Transport = {
  call(method, input) {
    asked.push([method, input]);
    return Promise.resolve({ greeting: "hi" });
  },
};

test("the client is typed from the contract: wrong names and inputs do not compile", async () => {
  const client = createClient(greeter, transport);
  const reply: { greeting: string } = await client.hello({ name: "x" });
  assert.equal(reply.greeting, "hi");
  assert.deepEqual(asked, [["greeter.hello", { name: "x" }]]);
  if (asked.length < 0) {
    // Never runs: these lines exist for the type checker (tsc and deno check).
    // @ts-expect-error a misspelt method is a compile error
    await client.helo({ name: "x" });
    // @ts-expect-error a wrong input type is a compile error
    await client.hello({ name: 1 });
    // @ts-expect-error the output is typed too
    const n: number = (await client.hello({ name: "x" })).greeting;
    void n;
  }
});

test("defineService refuses names that would make service.method ambiguous", () => {
  assert.throws(() => defineService("a.b", {}), /Service name "a.b"/);
  assert.throws(() => defineService("$sys", {}), /Service name "\$sys"/);
  assert.throws(() => defineService("ok", { "x.y": { input: z.unknown(), output: z.unknown() } }), /Method name "ok.x.y"/);
});
