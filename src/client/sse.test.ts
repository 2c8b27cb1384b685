import { describe, expect, it } from 'vitest';
import { SseParser } from './sse.js';

describe('SseParser', () => {
  it('parses events, multi-line data, comments and ids', () => {
    const p = new SseParser();
    const msgs = p.push(': ping\n\nevent: log\ndata: {"a":1}\n\ndata: one\ndata: two\nid: 7\n\n');
    expect(msgs).toEqual([
      { event: 'log', data: '{"a":1}' },
      { event: 'message', data: 'one\ntwo', id: '7' },
    ]);
  });

  it('handles chunks split anywhere, including inside CRLF', () => {
    const text = 'event: log\r\ndata: {"x":"é"}\r\n\r\nevent: end\r\ndata: {}\r\n\r\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = new SseParser();
      const msgs = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(msgs, `cut at ${cut}`).toEqual([
        { event: 'log', data: '{"x":"é"}' },
        { event: 'end', data: '{}' },
      ]);
    }
  });

  it('drops a message that never got its blank line, and takes values without the optional space', () => {
    const p = new SseParser();
    expect(p.push('event:log\ndata:abc\n\nevent: end\ndata: half')).toEqual([{ event: 'log', data: 'abc' }]);
    p.end();
    expect(p.push('\n\n')).toEqual([]);
  });
});
