// The large session used by history.test.mjs and bench-open.mjs:
// 5,000 messages of ≈2.2 KB (≈11 MB of transcript), alternating user text
// and assistant markdown parts; each starts with "message <i> ".

export const BIG = 5000;
const FILLER = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(38);

export function bigMessage(i) {
  return i % 2 === 0
    ? { role: 'user', content: `message ${i} ${FILLER}` }
    : { role: 'assistant', content: [{ type: 'text', text: `message ${i} **reply**\n\n${FILLER}` }] };
}
