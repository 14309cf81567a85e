// Reshape e-commerce events for a destination that wants snake_case keys, no nulls, a
// computed revenue and only the properties it knows. Settings: allowedProperties (array).

async function onTrack(event, settings) {
  if (event.event !== 'Order Completed') return event

  const products = _.get(event, 'properties.products', [])
  if (!Array.isArray(products) || products.length === 0) {
    throw new InvalidEventPayload('Order Completed needs at least one product')
  }
  const allowed = settings.allowedProperties || []
  const kept = allowed.length ? _.pick(event.properties, allowed) : _.omit(event.properties, 'products')
  const summary = {
    revenue: _.round(_.sumBy(products, p => (p.price || 0) * (p.quantity || 1)), 2),
    item_count: _.sumBy(products, p => p.quantity || 1),
    skus: _.uniq(_.map(products, 'sku')).sort(),
    by_category: _.countBy(products, 'category')
  }
  event.properties = _.omitBy(
    { ..._.mapKeys(kept, (value, key) => _.snakeCase(key)), ...summary },
    _.isNil
  )
  event.event = _.snakeCase(event.event)
  return event
}

async function onBatch(events, settings) {
  // Same transform per event; an invalid order rejects that one event only.
  return Promise.all(events.map(async event => {
    try {
      return event.type === 'track' ? await onTrack(event, settings) : event
    } catch (err) {
      if (err instanceof InvalidEventPayload) return err
      throw err
    }
  }))
}
