export * from '../../cli/frames.js'
