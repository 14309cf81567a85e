// Replace personal data by salted digests before it reaches the destination.
// Settings: salt (secret). Emails are lower-cased and phones reduced to digits first, so the
// same person always gets the same digest.

const PII_KEYS = ['email', 'phone']

function normalize(key, value) {
  const text = String(value).trim()
  return key === 'email' ? text.toLowerCase() : text.replace(/[^\d+]/g, '')
}

function digest(value, salt) {
  return crypto.createHmac('sha256', salt).update(value, 'utf8').digest('hex')
}

function scrub(fields, settings) {
  if (!fields) return
  for (const key of PII_KEYS) {
    if (fields[key] !== undefined && fields[key] !== null && fields[key] !== '') {
      fields[`${key}Hash`] = digest(normalize(key, fields[key]), settings.salt)
      delete fields[key]
    }
  }
}

function maskIp(context) {
  if (context && typeof context.ip === 'string' && context.ip.includes('.')) {
    context.ip = context.ip.split('.').slice(0, 3).concat('0').join('.')
  }
}

async function onIdentify(event, settings) {
  scrub(event.traits, settings)
  scrub(event.context && event.context.traits, settings)
  maskIp(event.context)
  return event
}

async function onTrack(event, settings) {
  scrub(event.properties, settings)
  scrub(event.context && event.context.traits, settings)
  maskIp(event.context)
  // A stable pseudonymous id for the destination, never the raw userId.
  if (event.userId) event.userId = digest(String(event.userId), settings.salt).slice(0, 32)
  return event
}
