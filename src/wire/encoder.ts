import { Encoder } from "@msgpack/msgpack";

/** One encoder per nesting limit: encoders are reused, never shared across limits. */
const encoders = new Map<number, Encoder>();

/** The shared msgpack encoder for `maxDepth` nesting levels (the peer decoder's limit, EBB_MAX_DEPTH); copy what `encodeSharedRef` returns before the next encode. */
export function encoderFor(maxDepth: number): Encoder {
  let encoder = encoders.get(maxDepth);
  if (!encoder) encoders.set(maxDepth, (encoder = new Encoder({ maxDepth })));
  return encoder;
}
