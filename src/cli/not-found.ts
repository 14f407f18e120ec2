// oclif's command_not_found hook. With spaces between topic and command, oclif glues every word
// up to the first flag into the command's name (`network ls extra` looks for `network:ls:extra`)
// and, finding nothing, prints its own multi-line error. Here: the longest name that is a command
// runs, with the other words as its arguments (its parser then names a stray word); otherwise
// one line names the unknown word and where the list of commands is.
import type {Hook} from '@oclif/core'

const hook: Hook<'command_not_found'> = async function (opts) {
  const words = opts.id.split(':')
  const rest = opts.argv ?? []
  for (let n = words.length - 1; n > 0; n--) {
    const id = words.slice(0, n).join(':')
    if (opts.config.findCommand(id)) return opts.config.runCommand(id, [...words.slice(n), ...rest])
  }
  let topic = ''
  for (let n = words.length - 1; n > 0; n--) {
    const id = words.slice(0, n).join(':')
    if (opts.config.findTopic(id)) {
      topic = words.slice(0, n).join(' ')
      break
    }
  }
  const unknown = words[topic === '' ? 0 : topic.split(' ').length]
  const where = topic === '' ? 'swarmnet' : `swarmnet ${topic}`
  process.stderr.write(`swarmnet: '${unknown}' is not a \`${where}\` command: see \`${where} --help\`\n`)
  process.exit(2)
}

export default hook
