// Add the user's local time to each track event, from the event's context.timezone or the
// instance's default zone. Settings: defaultTimezone.

async function onTrack(event, settings) {
  const zone = _.get(event, 'context.timezone') || settings.defaultTimezone || 'UTC'
  if (!moment.tz.zone(zone)) throw new ValidationError(`unknown time zone ${zone}`)
  const at = moment.tz(event.timestamp, moment.ISO_8601, true, zone)
  if (!at.isValid()) throw new InvalidEventPayload(`timestamp ${event.timestamp} is not an ISO 8601 date`)
  event.properties = {
    ...event.properties,
    localTime: at.format('YYYY-MM-DDTHH:mm:ssZ'),
    localHour: at.hour(),
    localWeekday: at.format('dddd'),
    businessHours: at.isoWeekday() <= 5 && at.hour() >= 9 && at.hour() < 17,
    timezone: zone
  }
  return event
}
