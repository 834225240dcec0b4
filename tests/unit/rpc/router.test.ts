import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { defineService } from "../../../src/rpc/contract.ts";
import { Router } from "../../../src/rpc/router.ts";

test("$info's description of a service: each method's idempotency, policy, and input and output as JSON Schema", () => {
  const shop = defineService("shop", {
    price: { input: z.object({ sku: z.string().min(1) }), output: z.number().int(), idempotent: true, timeoutMs: 2_000 },
    buy: { input: z.object({ sku: z.string(), qty: z.number().int().positive().default(1) }), output: z.null(), retry: { maxAttempts: 3, retryableCodes: ["APPLICATION"] } },
    blob: { input: z.instanceof(Uint8Array), output: z.bigint() },
  });
  const router = new Router().register(shop, { price: () => 1, buy: () => null, blob: () => 1n });
  const [price, buy, blob] = router.describe().shop!;
  assert.deepEqual(price, {
    name: "shop.price",
    idempotent: true,
    timeoutMs: 2_000,
    input: { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", properties: { sku: { type: "string", minLength: 1 } }, required: ["sku"] },
    output: { $schema: "https://json-schema.org/draft/2020-12/schema", type: "integer", minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
  });
  assert.deepEqual(buy!.retry, { maxAttempts: 3, retryableCodes: ["APPLICATION"] });
  assert.equal(buy!.idempotent, false);
  // As sent, qty may be left out (its default fills it in on the node).
  assert.deepEqual((buy!.input as { required: string[] }).required, ["sku"]);
  // Bytes and bigints have no JSON Schema: described as anything, not refused.
  assert.deepEqual(blob!.input, { $schema: "https://json-schema.org/draft/2020-12/schema" });
  assert.equal(router.describe(), router.describe(), "computed once, at registration");
});

test("route finds each method by name, names off the wire (fresh strings) included, whichever it found last", () => {
  const shop = defineService("shop", { price: { input: z.unknown(), output: z.unknown() }, buy: { input: z.unknown(), output: z.unknown() } });
  const router = new Router().register(shop, { price: () => 1, buy: () => 2 });
  // Built from char codes, as the msgpack decoder builds them: equal strings, not the same ones.
  const fresh = (name: string) => String.fromCharCode(...[...name].map((c) => c.charCodeAt(0)));
  for (const name of ["shop.price", "shop.price", "shop.buy", "shop.price", "shop.buy", "shop.buy"]) {
    assert.equal(router.route(fresh(name))?.name, name);
  }
  // An unknown name after a hit is not mistaken for it, and does not replace it.
  assert.equal(router.route(fresh("shop.pric")), undefined);
  assert.equal(router.route(fresh("shop.buy ")), undefined);
  assert.equal(router.route(fresh("shop.buy"))?.name, "shop.buy");
});
