/** `after` of a submit request: resolved on this replica, refused with a typed error. */
import { describe, expect, it } from 'vitest'
import { checkAfter } from '../../../src/service/submit-options.js'
import { ConflictError } from '../../../src/service/context.js'
import { NotFoundError } from '../../../src/util/errors.js'

const known: Record<string, string> = {
  abcdefgh: 'rendering',
  bcdefghi: 'failed',
  cdefghij: 'canceled',
}
const resolveId = (id: string) => {
  const hits = Object.keys(known).filter((k) => k.startsWith(id))
  if (hits.length > 1) throw new ConflictError(`job id ${id} is ambiguous`)
  if (hits.length === 0) throw new NotFoundError(`job ${id}`)
  return hits[0]
}
const check = (after: unknown) => checkAfter(after, resolveId, (id) => known[id])

describe('submit: after', () => {
  it('resolves prefixes to full ids, drops duplicates, keeps order', () => {
    expect(check(undefined)).toBeUndefined()
    expect(check(['abcdef', 'abcdefgh'])).toEqual(['abcdefgh'])
  })

  it('refuses garbage, unknown, failed and canceled jobs with ERR_INVALID_INPUT naming the field', () => {
    const cases: [unknown, RegExp][] = [
      ['abcdefgh', /1\.\.16 job ids/],
      [[], /1\.\.16 job ids/],
      [[1], /1\.\.16 job ids/],
      [Array(17).fill('abcdefgh'), /1\.\.16 job ids/],
      [['zzzzzzzz'], /job zzzzzzzz is not known on this mesh/],
      [['bcdefghi'], /has failed, so this job could never start; retry it first/],
      [['cdefghij'], /has been canceled/],
    ]
    for (const [after, message] of cases) {
      let err: unknown
      try {
        check(after)
      } catch (e) {
        err = e
      }
      expect(err, String(after)).toMatchObject({
        code: 'ERR_INVALID_INPUT',
        details: { field: 'after' },
      })
      expect((err as Error).message).toMatch(message)
    }
  })
})
