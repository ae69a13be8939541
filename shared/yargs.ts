/** The one place yargs enters; launcher/cli.ts and worker/config.ts parse flags through it. */
export { default as yargs } from 'yargs';
export { hideBin } from 'yargs/helpers';
