#!/usr/bin/env node
// Entry of `npx rosedist`: TypeScript sources run through tsx's loader, so a fresh clone needs no
// build step. The launcher runs worker programs with the same loader (shared/runtime.ts).
import { register } from 'tsx/esm/api';

register();
await import('../launcher/main.ts');
