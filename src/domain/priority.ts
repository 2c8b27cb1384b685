// Priorities: named bands or a number 0–100, higher first. Names are aliases for numbers.

export const PRIORITY_NAMES = { low: 25, normal: 50, high: 75, urgent: 100 } as const;
export type PriorityName = keyof typeof PRIORITY_NAMES;
export const MIN_PRIORITY = 0;
export const MAX_PRIORITY = 100;
/** The band a task near its start deadline is promoted to (the seed's rule against starvation). */
export const URGENT_PRIORITY = PRIORITY_NAMES.urgent;

export function priorityName(p: number): string {
  for (const [name, value] of Object.entries(PRIORITY_NAMES)) if (value === p) return name;
  return String(p);
}

export function parsePriority(input: string | number): number | null {
  if (typeof input === 'number') return Number.isInteger(input) && input >= MIN_PRIORITY && input <= MAX_PRIORITY ? input : null;
  const named = (PRIORITY_NAMES as Record<string, number>)[input.trim().toLowerCase()];
  if (named !== undefined) return named;
  if (/^\d+$/.test(input.trim())) return parsePriority(Number(input.trim()));
  return null;
}
