/**
 * True when `value` nests deeper than `maxDepth` levels, counting `value`
 * itself as level 1 and a scalar inside a container as a level too (as the
 * msgpack encoder counts). Iterative, and stops at the first level too deep,
 * so a hostile value costs no more than `maxDepth` levels of work per branch.
 */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (depth > maxDepth) return true;
    if (typeof item !== "object" || item === null || ArrayBuffer.isView(item)) continue;
    const children = Array.isArray(item) ? item : Object.values(item);
    for (const child of children) stack.push([child, depth + 1]);
  }
  return false;
}
