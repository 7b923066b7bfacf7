/**
 * The command list. To add a command: create cli/commands/<name>.ts exporting
 * `register(program: Command, ctx: CliContext): void` (see cli/command.ts) and list it here.
 * Help shows commands in this order.
 */
import type { CommandModule } from '../command.js'
import * as addon from './addon.js'
import * as cancel from './cancel.js'
import * as daemon from './daemon.js'
import * as dashboard from './dashboard.js'
import * as demo from './demo.js'
import * as del from './delete.js'
import * as fetch from './fetch.js'
import * as id from './id.js'
import * as init from './init.js'
import * as jobs from './jobs.js'
import * as join from './join.js'
import * as logs from './logs.js'
import * as node from './node.js'
import * as pause from './pause.js'
import * as peers from './peers.js'
import * as priority from './priority.js'
import * as retry from './retry.js'
import * as status from './status.js'
import * as submit from './submit.js'
import * as token from './token.js'
import * as web from './web.js'

export const COMMANDS: readonly CommandModule[] = [
  init,
  id,
  daemon,
  status,
  peers,
  node,
  submit,
  jobs,
  cancel,
  pause,
  retry,
  priority,
  logs,
  fetch,
  del,
  dashboard,
  token,
  web,
  join,
  demo,
  addon,
]
